//! `lsrecd emulator`: serve a local Live Station until Ctrl-C or SIGTERM.
//!
//! The first line on stdout is `listening on http://ADDR`, so a program that starts the emulator
//! with `--listen 127.0.0.1:0` can read the port it got.
//!
//! The control API (`/_emulator/`) can change everything the emulator serves, so a `--listen`
//! address other machines can reach is refused unless `--allow-remote` is given, and then the
//! control API requires a random bearer token, printed at start.
//!
//! `--fault-mix` sets a seeded probabilistic fault mix (the text form is documented in
//! `emulator::mix`); the seed is printed so that a run can be replayed with `--fault-seed`.

use std::io::Write as _;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::cli::{EmulatorArgs, GlobalArgs};
use crate::emulator::{
    Behaviour, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Emulator, EmulatorOptions, FaultMix,
    Lifecycle,
};
use crate::exit::{CommandError, FAILURE, USAGE};
use crate::secret::Secret;

/// Runs the emulator in the foreground.
pub async fn run(_g: &GlobalArgs, a: EmulatorArgs) -> Result<(), CommandError> {
    let listen: SocketAddr = a.listen.parse().map_err(|e| {
        CommandError::new(
            USAGE,
            format!(
                "--listen {:?} is not an IP:PORT address ({e}); e.g. 127.0.0.1:8080",
                a.listen
            ),
        )
    })?;
    let remote = !listen.ip().is_loopback();
    if remote && !a.allow_remote {
        return Err(CommandError::new(
            USAGE,
            format!(
                "--listen {listen} accepts connections from other machines, and the emulator's \
                 control API can change everything it serves; listen on 127.0.0.1, or add \
                 --allow-remote (the control API then requires a token printed at start)"
            ),
        ));
    }
    if a.live > a.channels {
        return Err(CommandError::new(
            USAGE,
            format!("--live {} is more than --channels {}", a.live, a.channels),
        ));
    }
    let mix = if a.fault_mix.is_empty() {
        None
    } else {
        let seed = a.fault_seed.unwrap_or_else(rand::random);
        let mix = FaultMix::from_specs(seed, &a.fault_mix)
            .map_err(|e| CommandError::new(USAGE, format!("--fault-mix: {e}")))?;
        Some(mix)
    };
    let keys_given = a.access_key.is_some();
    let opts = EmulatorOptions {
        access_key: a
            .access_key
            .unwrap_or_else(|| DEFAULT_ACCESS_KEY.to_string()),
        secret_key: a
            .secret_key
            .unwrap_or_else(|| DEFAULT_SECRET_KEY.to_string()),
        lifecycle: Lifecycle {
            processing: a.processing,
            transfer: a.transfer,
            retention: a.retention,
        },
        control_token: remote.then(|| {
            use rand::RngExt as _;
            Secret::new(format!("{:032x}", rand::rng().random::<u128>()))
        }),
        behaviour: {
            let mut behaviour = Behaviour {
                total: a.total,
                ..Behaviour::default()
            };
            behaviour.refuse_with_status(a.refusal_status);
            behaviour
        },
    };
    let control_auth = match &opts.control_token {
        Some(token) => format!("Authorization: Bearer {}", token.expose()),
        None => "no authentication: loopback only".to_string(),
    };
    let access_key = opts.access_key.clone();
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| CommandError::new(FAILURE, format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CommandError::new(FAILURE, format!("cannot read the bound address: {e}")))?;

    let emulator = Emulator::new(opts);
    let control = emulator.control();
    if let Some(mix) = &mix {
        control
            .set_fault_mix(mix.clone())
            .map_err(|e| CommandError::new(USAGE, format!("--fault-mix: {e}")))?;
    }
    let ids = control.add_channels(a.channels, "ls-emulator");
    for id in ids.iter().take(a.live) {
        control
            .go_live(id)
            .map_err(|e| CommandError::new(FAILURE, e.to_string()))?;
    }

    let secret_shown = if keys_given {
        "(the one given with --secret-key)"
    } else {
        DEFAULT_SECRET_KEY
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = writeln!(
        out,
        "Live Station emulator; regions KR (/api/v2) and FKR (/api/fin-v2)"
    );
    let _ = writeln!(out, "  access key: {access_key}");
    let _ = writeln!(out, "  secret key: {secret_shown}");
    let _ = writeln!(
        out,
        "  control:    http://{addr}/_emulator/ ({control_auth})"
    );
    let _ = writeln!(
        out,
        "  channels:   {} ({} live)",
        ids.len(),
        ids.len().min(a.live)
    );
    if let Some(mix) = &mix {
        let _ = writeln!(
            out,
            "  fault mix:  {} (--fault-seed {} replays it)",
            a.fault_mix.join(" "),
            mix.seed
        );
    }
    let _ = writeln!(out, "configuration for lsrecd:");
    let _ = writeln!(out, "  [api]");
    let _ = writeln!(out, "  endpoint = \"http://{addr}\"");
    let _ = writeln!(out, "  region = \"KR\"");
    let _ = writeln!(out, "  access_key = \"{access_key}\"");
    let _ = writeln!(
        out,
        "  secret_key_file = \"…\"   # containing the secret key above"
    );
    let _ = writeln!(out, "Ctrl-C or SIGTERM stops it.");
    let _ = out.flush();
    drop(out);

    tracing::info!(%addr, channels = ids.len(), "emulator serving");
    emulator
        .serve(listener, shutdown_signal())
        .await
        .map_err(|e| CommandError::new(FAILURE, format!("emulator stopped: {e}")))?;
    tracing::info!("emulator stopped");
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
