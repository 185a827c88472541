//! `flagstaff export`: environments as an offline bundle (`flagstaff-relay`'s `bundle.rs`) for a
//! relay with no upstream, signed with an Ed25519 key when one is given.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use flagstaff_app::App;
use flagstaff_relay::bundle::{self, Bundle, BundledCredential, BundledEnvironment};

use crate::server::StoreArgs;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The project whose environments are exported.
    #[arg(long)]
    project: String,
    /// The environments, comma-separated (`production,test`).
    #[arg(long, value_delimiter = ',', required = true)]
    environments: Vec<String>,
    /// The bundle file to write (replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// An Ed25519 private key in PEM (`openssl genpkey -algorithm ed25519 -out key.pem`) to
    /// sign the bundle with; relays started with the public key serve only bundles it signed.
    #[arg(long)]
    signing_key: Option<PathBuf>,
}

/// Writes the bundle; prints what it holds.
pub async fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let signing_key = match &args.signing_key {
        Some(path) => Some(bundle::signing_key_from_pem(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?),
        None => None,
    };
    let app = App::new(Arc::new(args.store.open().await?));
    let mut environments = Vec::new();
    for key in &args.environments {
        let Some(export) = app.sdk_export(&args.project, key).await? else {
            bail!("no environment {}/{key}", args.project);
        };
        environments.push(BundledEnvironment {
            project: args.project.clone(),
            key: key.clone(),
            client_side_id: export.client_side_id,
            secure_mode: export.secure_mode,
            credentials: export
                .credentials
                .into_iter()
                .map(|c| BundledCredential {
                    fingerprint: c.fingerprint,
                    kind: c.kind.as_str().to_owned(),
                    expires_at: c.expires_at,
                    secure_mode_key: c.secure_mode_key,
                })
                .collect(),
            data: export.data,
        });
    }
    let bundle = Bundle {
        format: bundle::FORMAT,
        created_at: app.now_millis(),
        environments,
    };
    let bytes = bundle::write(&bundle, signing_key.as_ref())?;
    // Written beside the target and renamed over it: a relay watching the file never reads a
    // half-written bundle under the final name.
    let temporary = args.out.with_extension("partial");
    std::fs::write(&temporary, &bytes)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    for environment in &bundle.environments {
        println!(
            "{}/{}: {} flags, {} segments, {} credentials",
            environment.project,
            environment.key,
            environment.data.flags.len(),
            environment.data.segments.len(),
            environment.credentials.len()
        );
    }
    println!(
        "wrote {} ({} bytes, {})",
        args.out.display(),
        bytes.len(),
        if signing_key.is_some() {
            "signed"
        } else {
            "unsigned"
        }
    );
    app.close().await;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ImportBundleArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The bundle file (`flagstaff export` on another installation).
    bundle: PathBuf,
    /// Import only a bundle signed by this Ed25519 public key (PEM).
    #[arg(long)]
    verify_key: Option<PathBuf>,
}

/// `flagstaff admin import-bundle`: promotes a bundle's flags and segments into this
/// installation's environments of the same keys, through the LaunchDarkly import (one audit
/// entry per flag and segment it changes, one transaction per environment), so that a running
/// server's SDKs receive the changes as usual. Credentials in the bundle are not imported: each
/// installation keeps its own keys.
pub async fn run_import(args: &ImportBundleArgs) -> anyhow::Result<()> {
    let verifying_key = match &args.verify_key {
        Some(path) => Some(bundle::verifying_key_from_pem(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?),
        None => None,
    };
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("cannot read {}", args.bundle.display()))?;
    let bundle = bundle::read(&bytes, verifying_key.as_ref())?;
    let app = App::new(Arc::new(args.store.open().await?));
    let actor = flagstaff_app::Actor::with_role("cli:import-bundle", flagstaff_app::Role::Admin);
    // Every environment must exist before anything is written.
    for environment in &bundle.environments {
        if app
            .sdk_environment(&environment.project, &environment.key)
            .await?
            .is_none()
        {
            bail!(
                "no environment {}/{} here: create it first (nothing was imported)",
                environment.project,
                environment.key
            );
        }
    }
    for environment in bundle.environments {
        let summary = app
            .import_flag_data(
                &actor,
                &environment.project,
                &environment.key,
                environment.data,
                &format!(
                    "imported from a bundle exported at {} (Unix ms)",
                    bundle.created_at
                ),
            )
            .await?;
        println!(
            "{}/{}: {} flags, {} segments imported",
            environment.project, environment.key, summary.flags, summary.segments
        );
    }
    app.close().await;
    Ok(())
}
