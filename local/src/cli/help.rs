//! The examples at the end of each command's `--help`. Each works as printed
//! from the project's root (the tests run every `eval` and `plan` example).

/// `timeline --help`.
pub(super) const MAIN_EXAMPLES: &str = "\
Examples:
  # A query over a file of events, one row per key
  timeline eval -q @examples/cirr.tl -e examples/cirr.jsonl --format table
  # The workers a query runs, as a tree
  timeline plan -q @examples/cirr.tl --tree
  # The HTTP API and the dashboard on http://localhost:8080
  timeline serve --listen localhost:8080

Each command's --help has its options and more examples.";

/// `timeline eval --help`.
pub(super) const EVAL_EXAMPLES: &str = "\
Examples:
  # CIRR of every session in a file, one JSON line per key
  timeline eval -q @examples/cirr.tl -e examples/cirr.jsonl
  # The same as a table, read at 30 s (milliseconds or RFC 3339)
  timeline eval -q @examples/cirr.tl -e examples/cirr.jsonl --format table --at 30000
  # Each key's whole timeline of an inline query, as CSV
  timeline eval -q 'latest_event_to_state(playerStateChange)' -e examples/cirr.jsonl --timeline --format csv
  # Events from a pipe; aggregates print one row per group
  timeline gen cirr --sessions 200 | timeline eval -q @examples/completion-rate.tl --format table";

/// `timeline plan --help`.
pub(super) const PLAN_EXAMPLES: &str = "\
Examples:
  # Every node with its expression, worker and id, shared nodes marked
  timeline plan -q @examples/cirr.tl --tree
  # A binding read twice is one worker
  timeline plan -q @examples/card-swipes.tl --tree
  # The plan as JSON, for scripts
  timeline plan -q 'count_where(has_existed(userAction == \"seek\"))'";

/// `timeline serve --help`.
pub(super) const SERVE_EXAMPLES: &str = "\
Examples:
  # On http://127.0.0.1:8080, data in ./timeline-data
  timeline serve
  # Another port and data directory
  timeline serve --listen localhost:9000 --data-dir /tmp/timeline-data
  # Reachable from other machines: with a token
  TIMELINE_TOKEN=s3cret timeline serve --listen 0.0.0.0:8080 --allow-host timeline.example.com
  # Then, from another shell: a job (events go to /v1/events the same way)
  curl -X POST 'http://localhost:8080/v1/jobs?name=cirr' --data-binary @examples/cirr.tl";

/// `timeline gen --help` and `timeline gen cirr --help`.
pub(super) const GEN_EXAMPLES: &str = "\
Examples:
  # 1000 sessions (about 50,000 events) into a file
  timeline gen cirr --sessions 1000 -o events.jsonl
  # Another sample of 100 sessions, straight into a query
  timeline gen cirr --sessions 100 --seed 7 | timeline eval -q @examples/cirr.tl";

/// `timeline completions --help`.
pub(super) const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  # Bash, this shell only
  source <(timeline completions bash)
  # Bash, every new shell
  timeline completions bash > ~/.local/share/bash-completion/completions/timeline
  # Zsh (with fpath+=(~/.zfunc) before compinit in ~/.zshrc)
  timeline completions zsh > ~/.zfunc/_timeline
  # Fish
  timeline completions fish > ~/.config/fish/completions/timeline.fish";
