//! Service glue: systemd notify and watchdog, signals, metrics and callbacks.
