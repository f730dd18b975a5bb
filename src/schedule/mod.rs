//! Schedules: crontab semantics evaluated in IANA time zones, and the next fire times.
