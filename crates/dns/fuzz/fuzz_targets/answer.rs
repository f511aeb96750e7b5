//! Feeds arbitrary bytes to the wire-level answer path over both transports: it must never panic
//! and must answer (or drop) every input.
#![no_main]

use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use libfuzzer_sys::fuzz_target;
use podnet_dns::{PodsMode, Transport, Zone, ZoneBuilder, ZoneConfig, answer};

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let config = ZoneConfig {
            pods: PodsMode::Insecure,
            reverse_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
            ..ZoneConfig::default()
        };
        let mut builder = ZoneBuilder::new(&config).unwrap();
        let service = Service {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some("web".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ips: Some(vec!["10.96.0.10".into(), "fd00:10::10".into()]),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        builder.add_service(&service);
        builder.build()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = answer(zone(), data, Transport::Udp);
    let _ = answer(zone(), data, Transport::Tcp);
});
