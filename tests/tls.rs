//! HTTPS to MAAS: the operator's CA file is trusted, an unknown certificate is not.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use maas_flow::maas::NodeStatus;
use maas_flow::sim::{scenario, ProvisionerConfig, Sim, SimConfig};

fn tls_sim(dir: &std::path::Path) -> (Sim, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_path = dir.join("maas-ca.pem");
    std::fs::write(&ca_path, ck.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let sim = Sim::start(
        SimConfig {
            workers: 1,
            tls: Some(Arc::new(server)),
            ..SimConfig::default()
        },
        scenario::rack(3),
        fast_timings(),
        ProvisionerConfig::default(),
    )
    .unwrap();
    (sim, ca_path.display().to_string())
}

#[actix_rt::test]
async fn https_with_the_operators_ca_file_works() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ca) = tls_sim(dir.path());
    assert!(sim.base_url.starts_with("https://localhost:"));
    let ctrl = start(&sim, &[("tls.ca_file", &ca), ("lifecycle.target", "ready")]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    assert!(sim.machines().iter().all(|m| m.status == NodeStatus::Ready));
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn an_unknown_certificate_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _) = tls_sim(dir.path());
    let ctrl = start(
        &sim,
        &[
            ("maas.username", "maas-flow"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    wait_for("failed lists", Duration::from_secs(10), || {
        ctrl.board.global().polls_failed >= 2
    })
    .await;
    let err = ctrl.board.global().last_poll_error.unwrap();
    assert!(err.contains("no answer from MAAS"), "{err}");
    assert!(sim.ops().is_empty(), "no request got through");
    assert!(sim.machines().iter().all(|m| m.status == NodeStatus::New));
    stop(ctrl).await;
    sim.stop().await;
}

#[test]
fn a_ca_file_that_is_not_pem_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ca.pem");
    std::fs::write(&p, "not a certificate").unwrap();
    let src = maas_flow::config::Sources {
        file: None,
        env: vec![],
        overrides: vec![
            ("maas.api_key".into(), "a:b:c".into()),
            ("tls.ca_file".into(), p.display().to_string()),
        ],
    };
    let e = maas_flow::config::load(&src).unwrap_err();
    assert_eq!(e.key, "tls.ca_file");
}
