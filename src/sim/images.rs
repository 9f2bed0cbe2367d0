//! The boot images a simulated region has synced: which `distro_series` a deploy may
//! ask for and which kernels each series offers.
//!
//! A real region refuses a deploy whose series or kernel it has no images for with a
//! 400 *field error* (`{"distro_series": [...]}`, `{"hwe_kernel": [...]}`), which no
//! re-read of the machine can fix. The simulator reproduces those answers word for word
//! so the controller's handling of them can be tested (issue 11 item 5).

use serde::{Deserialize, Serialize};

/// One synced Ubuntu series and the kernels MAAS offers for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesImage {
    /// The release name, e.g. `jammy`.
    pub series: String,
    /// Usable `hwe_kernel` values; empty reproduces "`<series>` has no kernels available."
    pub kernels: Vec<String>,
}

impl SeriesImage {
    fn new(series: &str, version: &str) -> Self {
        SeriesImage {
            series: series.into(),
            kernels: vec![format!("ga-{version}"), format!("hwe-{version}")],
        }
    }
}

/// The synced images of the region. The operating system is always `ubuntu`; the
/// architecture is the machines' `amd64/generic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootImages {
    /// The series synced, with their kernels.
    pub images: Vec<SeriesImage>,
}

impl Default for BootImages {
    /// The LTS releases a 3.4 region syncs: focal, jammy (MAAS's default series) and
    /// noble. The demo and the tests deploy `jammy`.
    fn default() -> Self {
        BootImages {
            images: vec![
                SeriesImage::new("focal", "20.04"),
                SeriesImage::new("jammy", "22.04"),
                SeriesImage::new("noble", "24.04"),
            ],
        }
    }
}

/// Why a deploy was refused: the field MAAS names and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The form field MAAS names (`distro_series`, `hwe_kernel`).
    pub field: &'static str,
    /// MAAS's message for it.
    pub message: String,
}

/// The architecture every simulated machine has (`architecture` in the template).
const ARCHITECTURE: &str = "amd64/generic";

impl BootImages {
    /// Only these series: `["focal", "jammy"]` reproduces the region of maas-api.md
    /// section 7, which had no noble images.
    pub fn only(series: &[&str]) -> Self {
        let all = BootImages::default();
        BootImages {
            images: series
                .iter()
                .map(|s| {
                    all.images
                        .iter()
                        .find(|i| i.series == *s)
                        .cloned()
                        .unwrap_or_else(|| SeriesImage {
                            series: s.to_string(),
                            kernels: vec![format!("ga-{s}")],
                        })
                })
                .collect(),
        }
    }

    /// Check a deploy's `distro_series` (`jammy` or `ubuntu/jammy`) and `hwe_kernel` as
    /// MAAS's machine form does, returning the series to record.
    ///
    /// Texts: `compose_invalid_choice_text` (canonical/maas `src/maasserver/utils/forms.py`,
    /// used by `forms/__init__.py` for `distro_series`: `'%(value)s' is not a valid
    /// distro_series.  It should be one of: '', 'ubuntu/focal', ...` with two spaces, the
    /// value echoed as sent), and `validate_hwe_kernel` (`utils/osystems.py`: `%s is not
    /// available for %s/%s on %s.`, `%s has no kernels available.`), as a 3.4.10 region
    /// answered them (maas-api.md section 7).
    pub fn validate_deploy(
        &self,
        distro_series: Option<&str>,
        hwe_kernel: Option<&str>,
    ) -> Result<String, FieldError> {
        let given = distro_series.unwrap_or("jammy");
        let (os, series) = match given.split_once('/') {
            Some((os, s)) => (os, s),
            None => ("ubuntu", given),
        };
        let image = self
            .images
            .iter()
            .find(|i| os == "ubuntu" && i.series == series);
        let Some(image) = image else {
            let mut choices = vec!["''".to_string()];
            choices.extend(self.images.iter().map(|i| format!("'ubuntu/{}'", i.series)));
            return Err(FieldError {
                field: "distro_series",
                message: format!(
                    "'{given}' is not a valid distro_series.  It should be one of: {}.",
                    choices.join(", ")
                ),
            });
        };
        if image.kernels.is_empty() {
            return Err(FieldError {
                field: "hwe_kernel",
                message: format!("{series} has no kernels available."),
            });
        }
        if let Some(k) = hwe_kernel.filter(|k| !k.is_empty()) {
            if !image.kernels.iter().any(|x| x == k) {
                return Err(FieldError {
                    field: "hwe_kernel",
                    message: format!("{k} is not available for ubuntu/{series} on {ARCHITECTURE}."),
                });
            }
        }
        Ok(series.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_like_a_3_4_region() {
        let imgs = BootImages::only(&["focal", "jammy"]);
        let e = imgs.validate_deploy(Some("noble"), None).unwrap_err();
        assert_eq!(e.field, "distro_series");
        assert_eq!(
            e.message,
            "'noble' is not a valid distro_series.  It should be one of: '', 'ubuntu/focal', 'ubuntu/jammy'."
        );
        assert_eq!(
            imgs.validate_deploy(Some("ubuntu/jammy"), None).unwrap(),
            "jammy"
        );
        assert_eq!(imgs.validate_deploy(None, None).unwrap(), "jammy");
        let e = imgs
            .validate_deploy(Some("jammy"), Some("hwe-99.04"))
            .unwrap_err();
        assert_eq!(
            (e.field, e.message.as_str()),
            (
                "hwe_kernel",
                "hwe-99.04 is not available for ubuntu/jammy on amd64/generic."
            )
        );
        let mut bare = BootImages::only(&["focal"]);
        bare.images[0].kernels.clear();
        let e = bare.validate_deploy(Some("focal"), None).unwrap_err();
        assert_eq!(e.message, "focal has no kernels available.");
    }
}
