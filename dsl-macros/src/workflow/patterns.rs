//! What a `match` arm's pattern means to a workflow: the scrutinee as a place, the
//! names a pattern binds, whether it matches an outcome, and an arm's short name.

use proc_macro2::Ident;
use syn::{Expr, Pat};

use super::Part;

/// The scrutinee as a place: a binding and its fields (`processed.kind`).
pub(super) fn place(expr: &Expr) -> Option<(Ident, Vec<(syn::Token![.], syn::Member)>)> {
    let mut fields = Vec::new();
    let mut at = expr;
    loop {
        match at {
            Expr::Field(field) => {
                fields.push((field.dot_token, field.member.clone()));
                at = &field.base;
            }
            Expr::Paren(paren) => at = &paren.expr,
            Expr::Path(path) if path.qself.is_none() => {
                let ident = path.path.get_ident()?.clone();
                fields.reverse();
                return Some((ident, fields));
            }
            _ => return None,
        }
    }
}

/// Whether a pattern matches what became of a binding: it names `Outcome::…`.
pub(super) fn names_outcome(pat: &Pat) -> bool {
    let outcome = |path: &syn::Path| {
        let segments: Vec<_> = path.segments.iter().collect();
        segments.len() >= 2 && segments[segments.len() - 2].ident == "Outcome"
    };
    match pat {
        Pat::TupleStruct(p) => outcome(&p.path),
        Pat::Path(p) => outcome(&p.path),
        Pat::Struct(p) => outcome(&p.path),
        Pat::Or(p) => p.cases.iter().any(names_outcome),
        Pat::Ident(p) => p.subpat.as_ref().is_some_and(|(_, sub)| names_outcome(sub)),
        _ => false,
    }
}

/// The names a pattern binds. An identifier that starts with an upper-case letter is
/// a unit variant or a constant (`None`, `MAX`), as rustc reads it by convention.
pub(super) fn bound_names(pat: &Pat) -> Vec<Ident> {
    let mut names = Vec::new();
    fn walk(pat: &Pat, names: &mut Vec<Ident>) {
        match pat {
            Pat::Ident(p) => {
                let upper = p.ident.to_string().starts_with(char::is_uppercase);
                if !upper || p.subpat.is_some() {
                    names.push(p.ident.clone());
                }
                if let Some((_, sub)) = &p.subpat {
                    walk(sub, names);
                }
            }
            Pat::Tuple(p) => p.elems.iter().for_each(|p| walk(p, names)),
            Pat::TupleStruct(p) => p.elems.iter().for_each(|p| walk(p, names)),
            Pat::Struct(p) => p.fields.iter().for_each(|f| walk(&f.pat, names)),
            Pat::Slice(p) => p.elems.iter().for_each(|p| walk(p, names)),
            Pat::Reference(p) => walk(&p.pat, names),
            Pat::Type(p) => walk(&p.pat, names),
            Pat::Paren(p) => walk(&p.pat, names),
            // Every case binds the same names.
            Pat::Or(p) => {
                if let Some(first) = p.cases.first() {
                    walk(first, names);
                }
            }
            _ => {}
        }
    }
    walk(pat, &mut names);
    names
}

/// A short name for an arm in its nodes' names: the variant a pattern names (`Csv` for
/// `Kind::Csv(text)`), `_` for a wildcard.
pub(super) fn segment_of(pat: &Pat) -> Option<String> {
    let last = |path: &syn::Path| path.segments.last().map(|s| s.ident.to_string());
    match pat {
        Pat::TupleStruct(p) => last(&p.path),
        Pat::Path(p) => last(&p.path),
        Pat::Struct(p) => last(&p.path),
        Pat::Wild(_) => Some("_".to_owned()),
        Pat::Ident(p) if p.subpat.is_none() => Some(p.ident.to_string()),
        _ => None,
    }
}

/// When an arm's value is a part, the binding whose whole value it is: `data` in
/// `Outcome::Ok(data) => data`, `v` in `v => v` on a binding. Any other part is a
/// piece of a value, which a branch cannot share in place.
pub(super) fn whole_value(part: &Part, name: &Ident) -> bool {
    if !part.fields.is_empty() {
        return false;
    }
    let binds = |pat: &Pat| matches!(pat, Pat::Ident(p) if p.ident == *name && p.subpat.is_none() && p.by_ref.is_none());
    match &part.pattern {
        Pat::TupleStruct(p) if part.outcome => {
            p.path.segments.last().is_some_and(|s| s.ident == "Ok")
                && p.elems.len() == 1
                && p.elems.first().is_some_and(binds)
        }
        pat if !part.outcome => binds(pat),
        _ => false,
    }
}
