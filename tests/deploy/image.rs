//! The image: configuration, user, binary and build context.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use telecmi_bridge::config::Settings;

use crate::deployment::*;
use crate::dockerfile::*;
use crate::dockerignore::*;
use crate::support::*;

#[test]
fn the_image_installs_the_configuration_where_the_binary_looks() {
    let dockerfile = &deploy().dockerfile;
    let workdir = dockerfile
        .runtime_workdir()
        .expect("the runtime stage should set WORKDIR");
    let env = dockerfile.runtime_env();
    let config_dir = match env.get("TELECMI_BRIDGE_CONFIG_DIR") {
        Some(dir) => workdir.join(dir),
        None => workdir.join(Settings::default_config_dir()),
    };
    let copies: Vec<Copy> = dockerfile
        .runtime_copies()
        .into_iter()
        .filter(|copy| {
            copy.from.is_none() && copy.sources.iter().any(|s| clean(s) == Path::new("config"))
        })
        .collect();
    let [copy] = copies.as_slice() else {
        panic!("the runtime stage should COPY config/ once: {copies:?}")
    };
    assert_eq!(copy.sources.len(), 1, "COPY config/ alone: {copy:?}");
    assert_eq!(
        clean(copy.destination(&workdir)),
        clean(&config_dir),
        "config/ must land where the binary reads it (WORKDIR/config or TELECMI_BRIDGE_CONFIG_DIR)"
    );
}

#[test]
fn the_image_runs_as_a_fixed_non_root_user() {
    let deploy = deploy();
    let user = deploy
        .dockerfile
        .runtime_value("USER")
        .expect("the runtime stage should set USER");
    let uid = user.split(':').next().unwrap_or_default();
    let uid: u64 = uid.parse().unwrap_or_else(|_| {
        panic!("USER {user:?}: use a numeric uid so runAsNonRoot can check it")
    });
    assert_ne!(uid, 0, "USER must not be root");
    let pod_user = deploy.pod_spec().pointer("/securityContext/runAsUser");
    if let Some(pod_user) = pod_user {
        assert_eq!(
            pod_user.as_u64(),
            Some(uid),
            "runAsUser should be the image's user"
        );
    }
}

#[test]
fn the_image_runs_the_binary_it_builds() {
    let dockerfile = &deploy().dockerfile;
    let builder = dockerfile
        .stages
        .iter()
        .find(|stage| stage.runs("cargo build --release --locked"))
        .expect("a stage should run `cargo build --release --locked`");
    let builder_workdir = builder.workdir().expect("the builder should set WORKDIR");
    let binary_copies: Vec<Copy> = dockerfile
        .runtime_copies()
        .into_iter()
        .filter(|copy| copy.from.as_deref() == builder.name.as_deref())
        .collect();
    let [binary] = binary_copies.as_slice() else {
        panic!("the runtime stage should copy the binary from the builder: {binary_copies:?}")
    };
    assert_eq!(
        clean(builder_workdir.join(&binary.sources[0])),
        clean(builder_workdir.join("target/release/telecmi-bridge")),
        "the copied binary should be the release build"
    );
    let installed = binary.destination(&dockerfile.runtime_workdir().unwrap_or_default());

    let entrypoint = dockerfile.exec_form("ENTRYPOINT");
    let command = dockerfile.exec_form("CMD");
    let program = entrypoint.first().expect("ENTRYPOINT names the program");
    let program_path = Path::new(program);
    let on_path = program_path.is_absolute() && program_path == installed
        || !program.contains('/')
            && installed.file_name() == Some(program_path.as_os_str())
            && installed.parent() == Some(Path::new("/usr/local/bin"));
    assert!(
        on_path,
        "ENTRYPOINT {program:?} does not run the installed {installed:?}"
    );

    // The arguments form a valid command line of this binary.
    let mut arguments: Vec<&str> = entrypoint[1..]
        .iter()
        .chain(&command)
        .map(String::as_str)
        .collect();
    arguments.push("--help");
    let output = run_binary(&arguments, &BTreeMap::new());
    assert!(
        output.status.success(),
        "`telecmi-bridge {}` is not a valid command line: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_image_build_context_has_everything_the_build_reads() {
    let deploy = deploy();
    let dockerfile = &deploy.dockerfile;
    let context_sources: Vec<PathBuf> = dockerfile
        .stages
        .iter()
        .flat_map(|stage| stage.copies())
        .filter(|copy| copy.from.is_none())
        .flat_map(|copy| copy.sources.iter().map(clean).collect::<Vec<_>>())
        .collect();
    for required in ["Cargo.toml", "Cargo.lock", "src", "config"] {
        assert!(
            context_sources
                .iter()
                .any(|source| source == Path::new(required)),
            "the Dockerfile should COPY {required}"
        );
    }
    if repo().join("build.rs").exists() {
        assert!(
            context_sources
                .iter()
                .any(|source| source == Path::new("build.rs")),
            "build.rs exists but the Dockerfile does not copy it"
        );
    }
    // Files the sources embed at compile time must be in the image's build too.
    for embedded in embedded_files(&repo().join("src")) {
        assert!(
            context_sources
                .iter()
                .any(|source| embedded.starts_with(source)),
            "src embeds {} but the Dockerfile does not copy it",
            embedded.display()
        );
    }
    // Cargo reads the manifest of every workspace member and path dependency, dev-only ones
    // included, before it builds anything.
    for manifest in local_manifests() {
        assert!(
            context_sources
                .iter()
                .any(|source| manifest.starts_with(source)),
            "Cargo.toml names {} but the Dockerfile does not copy it",
            manifest.display()
        );
    }
    // And .dockerignore lets every copied file through, and keeps the heavy stuff out.
    for source in &context_sources {
        let path = repo().join(source);
        assert!(
            path.exists(),
            "COPY {}: no such path in the repository",
            source.display()
        );
        for file in walk(&path) {
            let relative = file.strip_prefix(repo()).expect("inside the repository");
            assert!(
                !is_ignored(&deploy.dockerignore, relative),
                "Dockerfile.dockerignore drops {}, which the Dockerfile copies",
                relative.display()
            );
        }
    }
    for heavy in [
        "target/release/telecmi-bridge",
        ".git/HEAD",
        "tests/it/main.rs",
    ] {
        assert!(
            is_ignored(&deploy.dockerignore, Path::new(heavy)),
            "Dockerfile.dockerignore should leave {heavy} out of the build context"
        );
    }
    // The binary links the builder's glibc: both stages must be the same Debian release.
    let releases: Vec<Option<&str>> = [dockerfile.stages.first(), dockerfile.stages.last()]
        .into_iter()
        .flatten()
        .map(|stage| debian_release(&dockerfile.resolve_args(&stage.image)))
        .collect();
    assert!(
        releases.len() == 2 && releases[0].is_some() && releases[0] == releases[1],
        "builder and runtime should be the same Debian release: {releases:?}"
    );
}
