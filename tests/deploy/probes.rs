//! Ports, probes, health checks and shutdown timing agree with the listeners and the drain
//! budget.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use crate::deployment::*;
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// (b) Ports and probes.

#[test]
fn ports_agree_with_the_listeners() {
    let deploy = deploy();
    for (what, settings) in [
        ("compose", compose_settings()),
        ("Kubernetes", kubernetes_settings()),
    ] {
        let (listen, admin) = (settings.server.listen, settings.server.admin_listen);
        assert!(
            admin.ip().is_unspecified(),
            "{what}: server.admin_listen is {admin}; probes and Prometheus cannot reach it \
             from outside the container"
        );
        assert_eq!(
            deploy.dockerfile.exposed_ports(),
            BTreeSet::from([listen.port(), admin.port()]),
            "{what}: the Dockerfile's EXPOSE should be the two listeners"
        );
    }

    // compose: both listeners published, the admin one on loopback only.
    let settings = compose_settings();
    let published = compose_ports(deploy.compose_service(BRIDGE_SERVICE));
    let targets: BTreeSet<u16> = published.iter().map(|port| port.target).collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            settings.server.listen.port(),
            settings.server.admin_listen.port()
        ]),
        "compose should publish exactly the two listeners"
    );
    for port in &published {
        if port.target == settings.server.admin_listen.port() {
            assert!(
                matches!(
                    port.host_ip.as_deref(),
                    Some("127.0.0.1" | "::1" | "localhost")
                ),
                "compose publishes the admin port {} beyond this host: {port:?}",
                port.target
            );
        }
    }

    // Kubernetes: the named container ports are the listeners, and the Service exposes only
    // the webhook one.
    let settings = kubernetes_settings();
    let ports = container_ports(deploy.container());
    assert_eq!(ports.get("http"), Some(&settings.server.listen.port()));
    assert_eq!(
        ports.get("admin"),
        Some(&settings.server.admin_listen.port())
    );
    assert_eq!(ports.len(), 2, "only the two listeners: {ports:?}");
    for (file, service) in deploy.objects("Service") {
        let service_ports = array(pointer(service, "/spec", file), "ports");
        assert!(!service_ports.is_empty(), "{file}: a Service has no ports");
        for port in service_ports {
            let target = resolve_port(&port["targetPort"], &ports).unwrap_or_else(|| {
                panic!(
                    "Service targetPort {} is no container port",
                    port["targetPort"]
                )
            });
            assert_eq!(
                target,
                settings.server.listen.port(),
                "the Service must expose only the webhook listener, not {port}"
            );
        }
    }
    let annotations = pointer(
        deploy.object("StatefulSet"),
        "/spec/template/metadata/annotations",
        "pod template",
    );
    assert_eq!(
        annotations["prometheus.io/port"],
        settings.server.admin_listen.port().to_string(),
        "Prometheus should scrape the admin listener"
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
}

#[test]
fn probes_and_health_checks_use_the_admin_endpoints() {
    let deploy = deploy();
    let settings = kubernetes_settings();
    let ports = container_ports(deploy.container());
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = pointer(deploy.container(), &format!("/{probe}/httpGet"), probe);
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            resolve_port(&get["port"], &ports),
            Some(settings.server.admin_listen.port()),
            "{probe} should target the admin listener"
        );
    }

    // The image's health check asks the admin listener for /healthz; it follows the variable
    // that moves the listener (`the_image_health_check_works` runs it).
    let check = deploy.dockerfile.healthcheck_command().join(" ");
    assert!(
        check.contains("/healthz"),
        "HEALTHCHECK should ask /healthz: {check}"
    );
    assert!(
        check.contains("TELECMI_BRIDGE_SERVER__ADMIN_LISTEN")
            || check.contains(&format!(":{}", settings.server.admin_listen.port()))
            || check.contains(&format!("/{}", settings.server.admin_listen.port())),
        "HEALTHCHECK should target the admin port: {check}"
    );
}

/// Runs the Dockerfile's HEALTHCHECK command against the real admin router on a free port.
#[cfg(unix)]
#[test]
fn the_image_health_check_works() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let serve = |router: axum::Router| {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind a free port");
        let address = listener.local_addr().expect("local address");
        runtime.spawn(async move { axum::serve(listener, router).await });
        address
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let admin = serve(telecmi_bridge::http::admin_router(
        telecmi_bridge::http::Readiness::new(None),
        metrics,
    ));
    let failing = serve(
        axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "nope") }),
    );
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address")
    };

    assert!(
        run_healthcheck(admin),
        "HEALTHCHECK fails against a live admin listener"
    );
    assert!(!run_healthcheck(failing), "HEALTHCHECK passes on a 503");
    assert!(
        !run_healthcheck(closed),
        "HEALTHCHECK passes with nothing listening"
    );
}

// ---------------------------------------------------------------------------------------------
// (d) Shutdown.

#[test]
fn shutdown_grace_exceeds_the_drain_budget() {
    let deploy = deploy();
    let dockerfile = &deploy.dockerfile;
    assert_eq!(
        dockerfile.runtime_value("STOPSIGNAL").as_deref(),
        Some("SIGTERM"),
        "the bridge drains on SIGTERM"
    );
    let entrypoint = dockerfile.runtime_value("ENTRYPOINT").unwrap_or_default();
    assert!(
        entrypoint.trim_start().starts_with('['),
        "ENTRYPOINT must use the exec form, or a shell as PID 1 swallows SIGTERM: {entrypoint}"
    );

    let compose_drain = compose_settings().server.shutdown_timeout_ms;
    let service = deploy.compose_service(BRIDGE_SERVICE);
    let grace = parse_go_duration(&scalar(
        service
            .get("stop_grace_period")
            .expect("compose: set stop_grace_period (the default 10 s is shorter than the drain)"),
        "stop_grace_period",
    ));
    assert!(
        grace > compose_drain,
        "compose stop_grace_period {grace:?} must exceed server.shutdown_timeout_ms {compose_drain:?}"
    );
    if let Some(signal) = service.get("stop_signal") {
        assert_eq!(scalar(signal, "stop_signal"), "SIGTERM");
    }

    let drain = kubernetes_settings().server.shutdown_timeout_ms;
    let pre_stop = pre_stop_sleep(deploy.container());
    let grace = Duration::from_secs(
        deploy.pod_spec()["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("the StatefulSet should set terminationGracePeriodSeconds"),
    );
    assert!(
        grace > drain + pre_stop,
        "terminationGracePeriodSeconds {grace:?} must exceed the preStop sleep {pre_stop:?} \
         plus server.shutdown_timeout_ms {drain:?}"
    );
    assert!(
        pre_stop >= Duration::from_secs(1),
        "a preStop sleep keeps traffic away while endpoints are removed"
    );
}
