//! agnhost subcommands.
