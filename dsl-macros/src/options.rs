//! `#[task(retries = 3, retry_delay = "1s", …)]`: parse and validate the options.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, Meta, Token, UnOp};

use crate::crate_path::CratePath;
use crate::errors::{Errors, closest};

/// Every option `#[task]` accepts, as a user would write it, but `crate = path`: only a
/// crate that renamed or re-exports Aqueduct needs that one, and the docs show it.
const VALID: &str = "retries = 3, retry_delay = \"1s\", backoff = \"exponential\", \
                     max_delay = \"30s\", jitter = true, retry_panics = false, timeout = \"10s\", \
                     concurrency = 4, cache = \"7d\", version = 2";

const KEYS: &[&str] = &[
    "retries",
    "retry_delay",
    "backoff",
    "max_delay",
    "jitter",
    "retry_panics",
    "retry_clones",
    "timeout",
    "concurrency",
    "cache",
    "version",
    "crate",
];

const BACKOFFS: &[&str] = &["fixed", "linear", "exponential"];

/// Validated options, durations in milliseconds.
#[derive(Default)]
pub(crate) struct Options {
    retries: Option<u32>,
    retry_delay: Option<u64>,
    backoff: Option<String>,
    max_delay: Option<u64>,
    jitter: Option<bool>,
    retry_panics: Option<bool>,
    /// `retry_clones = true`, and where it is written.
    retry_clones: Option<(bool, Span)>,
    /// Where `retries` is written.
    retries_at: Option<Span>,
    timeout: Option<u64>,
    concurrency: Option<u32>,
    /// `cache` (`None` inside: kept for ever) or `cache = "7d"`, and where it is written.
    cache: Option<(Option<u64>, Span)>,
    /// `version = N` of a cached task, and where it is written.
    version: Option<(u32, Span)>,
    crate_path: CratePath,
}

impl Options {
    /// Parses `args`; on any mistake, reports it to `errors` and returns `None`.
    pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> Option<Self> {
        let parser = Punctuated::<Meta, Token![,]>::parse_terminated;
        let metas = match syn::parse::Parser::parse2(parser, args) {
            Ok(metas) => metas,
            Err(error) => {
                errors.push(syn::Error::new(
                    error.span(),
                    format!("malformed task options: write them as `#[task({VALID})]`"),
                ));
                return None;
            }
        };
        let mut options = Self::default();
        let mut ok = true;
        let mut seen: Vec<String> = Vec::new();
        for meta in &metas {
            let key = meta
                .path()
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            if seen.contains(&key) {
                errors.at(meta.path(), format!("`{key}` is given twice"));
                ok = false;
                continue;
            }
            seen.push(key.clone());
            ok &= options.set(&key, meta, errors).is_some();
        }
        if let (Some((_, at)), None) = (options.version, options.cache) {
            errors.push(syn::Error::new(
                at,
                "`version` is part of a cached task's key, but this task is not cached: add \
                 `cache`, or remove `version`",
            ));
            ok = false;
        }
        if let (Some(delay), Some(cap)) = (options.retry_delay, options.max_delay)
            && cap < delay
        {
            let meta = metas.iter().find(|m| m.path().is_ident("max_delay"));
            errors.at(
                meta,
                "`max_delay` is shorter than `retry_delay`: no delay could reach it",
            );
            ok = false;
        }
        ok.then_some(options)
    }

    fn set(&mut self, key: &str, meta: &Meta, errors: &mut Errors) -> Option<()> {
        let value = match meta {
            Meta::NameValue(pair) => Some(&pair.value),
            Meta::Path(_) => None,
            Meta::List(list) => {
                errors.at(list, format!("write `{key} = value`, not `{key}(…)`"));
                return None;
            }
        };
        match key {
            "retries" => {
                self.retries = Some(whole_number(key, meta, value, errors)?);
                self.retries_at = Some(meta.path().span());
            }
            "retry_delay" => self.retry_delay = Some(duration(key, meta, value, errors)?),
            "max_delay" => self.max_delay = Some(duration(key, meta, value, errors)?),
            "timeout" => self.timeout = Some(duration(key, meta, value, errors)?),
            "concurrency" => {
                let limit = whole_number(key, meta, value, errors)?;
                if limit == 0 {
                    errors.at(
                        value,
                        "`concurrency` is at least 1: a task that may never run would stall its workflow",
                    );
                    return None;
                }
                self.concurrency = Some(limit);
            }
            "crate" => self.crate_path = CratePath::parse(meta, value, errors)?,
            "cache" => {
                let ttl = match value {
                    None => None,
                    Some(_) => Some(duration(key, meta, value, errors)?),
                };
                if ttl == Some(0) {
                    errors.at(
                        value,
                        "a cached result that expires at once is never used: give a positive \
                         duration, e.g. `cache = \"7d\"`, or write `cache` to keep it until \
                         `cache clear`",
                    );
                    return None;
                }
                self.cache = Some((ttl, meta.path().span()));
            }
            "version" => {
                self.version = Some((whole_number(key, meta, value, errors)?, meta.path().span()));
            }
            "jitter" => self.jitter = Some(boolean(key, value, errors)?),
            "retry_panics" => self.retry_panics = Some(boolean(key, value, errors)?),
            "retry_clones" => {
                self.retry_clones = Some((boolean(key, value, errors)?, meta.path().span()));
            }
            "backoff" => {
                let (text, lit) = string(key, meta, value, "\"exponential\"", errors)?;
                if !BACKOFFS.contains(&text.as_str()) {
                    errors.at(
                        lit,
                        format!("unknown backoff `{text}`: valid backoffs are \"fixed\", \"linear\" and \"exponential\""),
                    );
                    return None;
                }
                self.backoff = Some(text);
            }
            _ => {
                let hint = closest(key, KEYS.iter().copied())
                    .or_else(|| {
                        KEYS.iter()
                            .copied()
                            .find(|k| !key.is_empty() && k.starts_with(key))
                    })
                    .or_else(|| key.contains("crate").then_some("crate"))
                    .map(|close| format!("did you mean `{close}`? "))
                    .unwrap_or_default();
                errors.at(
                    meta.path(),
                    format!(
                        "unknown task option `{}`: {hint}valid options are {VALID}",
                        meta.path().to_token_stream()
                    ),
                );
                return None;
            }
        }
        Some(())
    }

    /// `retries = N` with N > 0: where it is written.
    pub(crate) fn retries_at(&self) -> Option<Span> {
        self.retries_at.filter(|_| self.retries.unwrap_or(0) > 0)
    }

    /// `retry_clones = …`: its value and where it is written.
    pub(crate) fn retry_clones(&self) -> Option<(bool, Span)> {
        self.retry_clones
    }

    /// `cache`: where it is written.
    pub(crate) fn cache_at(&self) -> Option<Span> {
        self.cache.map(|(_, at)| at)
    }

    /// The `CachePolicy` of a cached task whose code hashes to `code`, as a constant
    /// expression; `None` for a task that is not cached.
    pub(crate) fn cache(&self, code: u64) -> TokenStream {
        let p = self.crate_path.private();
        match self.cache {
            None => quote!(::core::option::Option::None),
            Some((ttl, _)) => {
                let version = self.version.map_or(0, |(v, _)| v);
                let ttl = optional_millis(ttl, &p);
                quote! {
                    ::core::option::Option::Some(#p::CachePolicy {
                        code: #code,
                        version: #version,
                        module: ::core::module_path!(),
                        ttl: #ttl,
                    })
                }
            }
        }
    }

    /// The path the expansion names Aqueduct by: `crate = …`, or `::aqueduct`.
    pub(crate) fn crate_path(&self) -> &CratePath {
        &self.crate_path
    }

    /// The `RetryPolicy` these options describe, as a constant expression.
    pub(crate) fn policy(&self) -> TokenStream {
        let p = self.crate_path.private();
        let retries = self.retries.unwrap_or(0);
        let delay = self.retry_delay.unwrap_or(1000);
        let backoff = match self.backoff.as_deref().unwrap_or("exponential") {
            "fixed" => quote!(#p::Backoff::Fixed),
            "linear" => quote!(#p::Backoff::Linear),
            _ => quote!(#p::Backoff::Exponential),
        };
        let max_delay = optional_millis(self.max_delay, &p);
        let jitter = self.jitter.unwrap_or(true);
        let retry_panics = self.retry_panics.unwrap_or(false);
        quote! {
            #p::RetryPolicy {
                retries: #retries,
                delay: #p::Duration::from_millis(#delay),
                backoff: #backoff,
                max_delay: #max_delay,
                jitter: #jitter,
                retry_panics: #retry_panics,
            }
        }
    }

    /// The concurrency limit, as a constant expression.
    pub(crate) fn concurrency(&self) -> TokenStream {
        match self.concurrency {
            Some(limit) => quote!(::core::option::Option::Some(#limit)),
            None => quote!(::core::option::Option::None),
        }
    }

    /// The per-attempt timeout, as a constant expression.
    pub(crate) fn timeout(&self) -> TokenStream {
        optional_millis(self.timeout, &self.crate_path.private())
    }
}

fn optional_millis(millis: Option<u64>, p: &TokenStream) -> TokenStream {
    match millis {
        Some(ms) => quote!(::core::option::Option::Some(#p::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    }
}

fn literal<'a>(
    key: &str,
    meta: &Meta,
    value: Option<&'a Expr>,
    example: &str,
    errors: &mut Errors,
) -> Option<&'a Lit> {
    match value {
        Some(Expr::Lit(ExprLit { lit, .. })) => Some(lit),
        Some(Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        })) => {
            errors.at(
                value,
                format!("`{key}` cannot be negative: write e.g. `{key} = {example}`"),
            );
            None
        }
        Some(other) => {
            errors.at(
                other,
                format!("`{key}` takes a literal: write e.g. `{key} = {example}`"),
            );
            None
        }
        None => {
            errors.at(
                meta,
                format!("`{key}` needs a value: write e.g. `{key} = {example}`"),
            );
            None
        }
    }
}

fn whole_number(key: &str, meta: &Meta, value: Option<&Expr>, errors: &mut Errors) -> Option<u32> {
    match literal(key, meta, value, "3", errors)? {
        Lit::Int(int) if int.base10_digits().starts_with('-') => {
            errors.at(
                int,
                format!("`{key}` cannot be negative: write e.g. `{key} = 3`"),
            );
            None
        }
        Lit::Int(int) => match int.base10_parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.at(
                    int,
                    format!("`{key}` is a whole number from 0 to {}", u32::MAX),
                );
                None
            }
        },
        other => {
            errors.at(
                other,
                format!("`{key}` is a whole number: write e.g. `{key} = 3`"),
            );
            None
        }
    }
}

fn string<'a>(
    key: &str,
    meta: &Meta,
    value: Option<&'a Expr>,
    example: &str,
    errors: &mut Errors,
) -> Option<(String, &'a Lit)> {
    let lit = literal(key, meta, value, example, errors)?;
    match lit {
        Lit::Str(text) => Some((text.value(), lit)),
        other => {
            errors.at(
                other,
                format!("`{key}` takes a string: write e.g. `{key} = {example}`"),
            );
            None
        }
    }
}

fn duration(key: &str, meta: &Meta, value: Option<&Expr>, errors: &mut Errors) -> Option<u64> {
    let (text, lit) = string(key, meta, value, "\"1s\"", errors)?;
    let Some(millis) = parse_duration(&text) else {
        errors.at(
            lit,
            format!(
                "malformed duration \"{text}\": write a whole number and a unit, \
                 e.g. \"250ms\", \"1s\", \"2m\", \"1h\" or \"7d\""
            ),
        );
        return None;
    };
    if key == "timeout" && millis == 0 {
        errors.at(
            lit,
            "a timeout of zero would fail every attempt: give it a positive duration",
        );
        return None;
    }
    Some(millis)
}

/// `"250ms"`, `"1s"`, `"2m"`, `"1h"`, `"7d"` in milliseconds.
fn parse_duration(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn boolean(key: &str, value: Option<&Expr>, errors: &mut Errors) -> Option<bool> {
    match value {
        None => Some(true),
        Some(Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        })) => Some(b.value),
        Some(other) => {
            errors.at(other, format!("`{key}` is `true` or `false`"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_are_a_whole_number_and_a_unit() {
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("1s"), Some(1_000));
        assert_eq!(parse_duration("2m"), Some(120_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000));
        assert_eq!(parse_duration("7d"), Some(604_800_000));
        for bad in ["", "1", "s", "1.5s", "1 s", "-1s", "1sec", "1w"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
