//! A workflow's parameters on the command line: a clap `Args` struct of the user's,
//! added to `run` (and to the bare command, which runs).

use clap::{ArgMatches, Args, FromArgMatches};

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
        if arg.get_short() == Some('h') {
            return Err(format!(
                "the workflow's parameter `{}` takes `-h`, the command line's help: give it \
                 another short name",
                arg.get_id()
            ));
        }
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
pub(super) fn parse<C: FromArgMatches, A: Args>(
    command: clap::Command,
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<(C, Option<A>), clap::Error> {
    // A doc comment on `A` would become the commands' `about`: theirs are kept.
    let about = command.get_about().cloned();
    let run_about = command
        .find_subcommand("run")
        .and_then(|run| run.get_about().cloned());
    let mut command = A::augment_args(
        command
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true),
    )
    .mut_subcommand("run", |run| {
        let run = A::augment_args(run);
        match &run_about {
            Some(about) => run.about(about.clone()),
            None => run,
        }
    });
    if let Some(about) = about {
        command = command.about(about);
    }
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
