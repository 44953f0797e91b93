//! Command line: subcommands run, check, pair-info, reset, selftest.
