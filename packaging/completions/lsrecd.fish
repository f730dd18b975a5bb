# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_lsrecd_global_optspecs
    string join \n config= log-format= v/verbose q/quiet h/help V/version
end

function __fish_lsrecd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_lsrecd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_lsrecd_using_subcommand
    set -l cmd (__fish_lsrecd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c lsrecd -n "__fish_lsrecd_needs_command" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_needs_command" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_needs_command" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -s V -l version -d 'Print version'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "run" -d 'Run the daemon (what systemd runs)'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "check" -d 'Validate the configuration and print the next fire times of every schedule'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "status" -d 'Channels, active recordings, next occurrences, failures and expiring records, from the database'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "records" -d 'Recordings from the database'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "start" -d 'Claim a channel manually: record it until `lsrecd stop` or its max_duration'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "stop" -d 'End a manual claim (stops the recording if no other claim holds the channel)'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "probe" -d 'Check the Live Station account read-only before go-live: credentials, clock, paging, error statuses, the configured channels and their records'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "emulator" -d 'Run a local Live Station emulator'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "demo" -d 'Run the emulator and the daemon together with a sample configuration; no account needed'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "manpage" -d 'Print the manual page (roff), or write every page to a directory'
complete -c lsrecd -n "__fish_lsrecd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand run" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand run" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand run" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand run" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand run" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -l next -d 'How many fire times to print per schedule' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -l from -d 'Compute fire times after this instant (RFC 3339) instead of now' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -l json -d 'Print JSON'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -l no-credentials -d 'Check everything but the API keys: read no key file, environment variable or systemd credential (for a machine without the keys, e.g. a configuration repository\'s CI)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand check" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand status" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand status" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand status" -l json -d 'Print JSON'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand status" -l utc -d 'Show times in UTC instead of daemon.timezone'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand status" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand status" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand status" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -l channel -d 'Only records of this channel (id or label)' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -l status -d 'Only records in this status (e.g. RECORDING, TRANSFER_FINISH)' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -l json -d 'Print JSON'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -l utc -d 'Show times in UTC instead of daemon.timezone'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand records" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand start" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand start" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand start" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand start" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand start" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand stop" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand stop" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand stop" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand stop" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand stop" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand probe" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand probe" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand probe" -l json -d 'Print one JSON object'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand probe" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand probe" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand probe" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l listen -d 'Address to listen on (loopback unless --allow-remote)' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l access-key -d 'Access key the emulator accepts' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l secret-key -d 'Secret key the emulator accepts' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l channels -d 'Create this many channels at start (ids `ls-emulator-00001`, …)' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l live -d 'Make the first N of those channels live at start' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l processing -d 'How long records stay in PROCESSING after a recording ends' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l transfer -d 'How long an upload (TRANSFER) takes' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l retention -d 'How long temporary recordings are kept (shouldDeleteTime - createdTime)' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l fault-mix -d 'A seeded share of requests get faults: `[OPS@]KIND=PERCENT[:PARAM=VALUE]...,...` (repeatable)' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l fault-seed -d 'Seed of the fault mix\'s random draws (default: random, printed at start); the same seed gives each operation the same sequence of faults' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l total -d 'What the channel list\'s `total` counts: every matching channel, the entries of the page, or nothing (no `total`). The reference allows each reading' -r -f -a "all\t'Every channel matching the query, on every page'
page\t'The entries of the page it comes with'
absent\t'No `total` at all'"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l refusal-status -d 'HTTP status of the ordinary refusals (`250005 NOT_AVAILABLE` of a start or stop the channel\'s state refuses, `250004 NOT_FOUND`); the reference does not give one' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -l allow-remote -d 'Allow a --listen address other machines can reach. The control API then requires the bearer token printed at start'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand emulator" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand demo" -l duration -d 'Stop after this long (e.g. "30s", "5m"); default: until Ctrl-C' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand demo" -l timezone -d 'daemon.timezone of the sample configuration (IANA name); default: this machine\'s zone' -r
complete -c lsrecd -n "__fish_lsrecd_using_subcommand demo" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand demo" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand demo" -l utc -d 'Show times in UTC instead of the configuration\'s zone'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand demo" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand demo" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand demo" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand completions" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand completions" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand completions" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand completions" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand completions" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand manpage" -l out-dir -d 'Write lsrecd.1 and one lsrecd-SUBCOMMAND.1 per subcommand here instead of printing lsrecd.1' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand manpage" -l config -d 'Configuration file' -r -F
complete -c lsrecd -n "__fish_lsrecd_using_subcommand manpage" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c lsrecd -n "__fish_lsrecd_using_subcommand manpage" -s v -l verbose -d 'More log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand manpage" -s q -l quiet -d 'Less log output (repeatable)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand manpage" -s h -l help -d 'Print help'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "run" -d 'Run the daemon (what systemd runs)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "check" -d 'Validate the configuration and print the next fire times of every schedule'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "status" -d 'Channels, active recordings, next occurrences, failures and expiring records, from the database'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "records" -d 'Recordings from the database'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "start" -d 'Claim a channel manually: record it until `lsrecd stop` or its max_duration'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "stop" -d 'End a manual claim (stops the recording if no other claim holds the channel)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "probe" -d 'Check the Live Station account read-only before go-live: credentials, clock, paging, error statuses, the configured channels and their records'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "emulator" -d 'Run a local Live Station emulator'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "demo" -d 'Run the emulator and the daemon together with a sample configuration; no account needed'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "manpage" -d 'Print the manual page (roff), or write every page to a directory'
complete -c lsrecd -n "__fish_lsrecd_using_subcommand help; and not __fish_seen_subcommand_from run check status records start stop probe emulator demo completions manpage help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
