//! A workflow's parameters on the command line: a clap `Args` struct of the user's,
//! added to `run` (and to the bare command, which runs).

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches};

/// The command line's own options of `run`: a parameter may not take their names.
const RESERVED: [&str; 6] = [
    "store",
    "run_id",
    "no_store",
    "distributed",
    "database_url",
    "help",
];

/// Why `A` cannot be added to `run`, if it cannot: an argument with the id or long
/// name of one of the command line's own.
pub(super) fn clashes<A: Args>() -> Result<(), String> {
    let probe = A::augment_args(clap::Command::new("probe"));
    for arg in probe.get_arguments() {
        let id = arg.get_id().as_str();
        let long = arg.get_long().map(|long| long.replace('-', "_"));
        if let Some(taken) = RESERVED
            .iter()
            .find(|name| **name == id || long.as_deref() == Some(**name))
        {
            return Err(format!(
                "the workflow's parameter `{id}` takes the name of the command line's own \
                 `--{}`: rename it",
                taken.replace('_', "-")
            ));
        }
    }
    Ok(())
}

/// Parses `args` with `A` added to `run` and to the bare command: the command line,
/// and the parameters if it runs.
pub(super) fn parse<C: CommandFactory + FromArgMatches, A: Args>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<(C, Option<A>), clap::Error> {
    let command = A::augment_args(
        C::command()
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true),
    )
    .mut_subcommand("run", |run| A::augment_args(run));
    let matches = command.try_get_matches_from(args)?;
    let parsed = C::from_arg_matches(&matches)?;
    let runs: Option<&ArgMatches> = match matches.subcommand() {
        None => Some(&matches),
        Some(("run", run)) => Some(run),
        Some(_) => None,
    };
    let params = runs.map(A::from_arg_matches).transpose()?;
    Ok((parsed, params))
}
