//! `if` and `match` in a workflow: their syntax turned into a [`Branch`], the names
//! their conditions read (rewritten to read the run's values by reference), and the
//! scope of each arm.
//!
//! The conditions, patterns and guards stay the user's Rust: the expansion puts them
//! in a real `if`/`match` in the decision's closure, so a condition that is not a
//! `bool` or a `match` that is not exhaustive is rustc's own error at the user's token.

use std::rc::Rc;

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Expr, ExprIf, ExprMatch, Pat, Stmt};

use super::parse::{BodyOf, block};
use super::validate::Scope;
use super::{Arm, Branch, Form, Part, Read, Tail};
use crate::errors::Errors;

/// The local a decision's closure binds a read name to (a reference to its value).
pub(super) fn read_local(ident: &Ident) -> Ident {
    let span = Span::mixed_site().located_at(ident.span());
    quote::format_ident!("__aqueduct_c_{}", ident, span = span)
}

/// `if …` or `match …` as a node's value or a body's tail.
pub(super) fn branch(
    expr: &Expr,
    scope: &mut Scope,
    errors: &mut Errors,
    in_loop: bool,
) -> Option<Branch> {
    match expr {
        Expr::If(expr_if) => if_branch(expr_if, scope, errors, in_loop),
        Expr::Match(expr_match) => match_branch(expr_match, scope, errors, in_loop),
        _ => None,
    }
}

fn if_branch(
    expr_if: &ExprIf,
    scope: &mut Scope,
    errors: &mut Errors,
    in_loop: bool,
) -> Option<Branch> {
    let keyword = Ident::new("if", expr_if.if_token.span);
    let id = Scope::branch_id();
    let mut reads = Vec::new();
    let mut conditions = Vec::new();
    let mut bodies = Vec::new();
    let mut texts = Vec::new();
    let mut has_else = false;
    let mut at = expr_if;
    loop {
        if let Expr::Let(expr_let) = &*at.cond {
            errors.at(
                expr_let.let_token,
                "a workflow has no `if let`: write `match value { Pattern(part) => …, _ => … }`",
            );
            return None;
        }
        texts.push(pretty(&at.cond.to_token_stream()));
        conditions.push(rewrite(at.cond.to_token_stream(), scope, &[], &mut reads));
        bodies.push((
            &at.then_branch.stmts[..],
            at.then_branch.brace_token.span.close(),
        ));
        match &at.else_branch {
            None => break,
            Some((_, else_expr)) => match &**else_expr {
                Expr::If(next) => at = next,
                Expr::Block(block) => {
                    has_else = true;
                    bodies.push((&block.block.stmts[..], block.block.brace_token.span.close()));
                    break;
                }
                other => {
                    errors.at(other, "`else` is followed by a block or another `if`");
                    return None;
                }
            },
        }
    }
    if !has_else && conditions.len() > 1 {
        errors.at(
            expr_if.if_token,
            "an `if` with `else if` arms ends with an `else`: every arm gives the branch its \
             value (only a lone `if` without `else` is an `Option`)",
        );
        return None;
    }
    let count = bodies.len();
    let mut arms = Vec::new();
    for (index, (stmts, close)) in bodies.into_iter().enumerate() {
        let segment = match index {
            0 => "then".to_owned(),
            _ if has_else && index == count - 1 => "else".to_owned(),
            _ => format!("else_if{index}"),
        };
        let arm_at = (id, index as u32);
        let (nodes, tail) = arm_body(
            stmts,
            close,
            scope,
            errors,
            BodyOf::Arm {
                in_loop,
                optional: !has_else,
                branch: id,
            },
            arm_at,
            |_| {},
        );
        arms.push(Arm {
            label: segment.clone(),
            segment,
            pattern: None,
            nodes,
            tail: Some(tail?),
        });
    }
    if !has_else {
        arms.push(Arm {
            label: "else".to_owned(),
            segment: "else".to_owned(),
            pattern: None,
            nodes: Vec::new(),
            tail: None,
        });
    }
    note_reads(&reads, scope, errors);
    Some(Branch {
        keyword,
        reads,
        text: texts.join(", else if "),
        form: Form::If {
            conditions,
            has_else,
        },
        arms,
        id,
    })
}

fn match_branch(
    expr_match: &ExprMatch,
    scope: &mut Scope,
    errors: &mut Errors,
    in_loop: bool,
) -> Option<Branch> {
    let keyword = Ident::new("match", expr_match.match_token.span);
    let id = Scope::branch_id();
    let outcome = expr_match.arms.iter().any(|arm| names_outcome(&arm.pat));
    let place = place(&expr_match.expr);
    let mut reads = Vec::new();
    let scrutinee = if outcome {
        // What became of a binding: read as an outcome, which is the value matched.
        let root = match &place {
            Some((root, fields)) if fields.is_empty() => root.clone(),
            _ => {
                errors.at(
                    &expr_match.expr,
                    "a `match` on what became of a binding (`Outcome::Ok(v) => …`) takes the \
                     binding itself: `match fetched { Outcome::Ok(data) => …, _ => … }`",
                );
                return None;
            }
        };
        if scope.part(&root).is_some() || scope.is_borrowed_item(&root) {
            errors.at(
                &root,
                format!(
                    "`{root}` always has a value: a `match` on what became of a binding \
                     (`Outcome::…`) takes a task's output"
                ),
            );
            return None;
        }
        if !scope.knows(&root) {
            scope.check(&root, None, errors);
            return None;
        }
        reads.push(Read {
            ident: root.clone(),
            part: None,
            outcome: true,
        });
        read_local(&root).to_token_stream()
    } else {
        let tokens = rewrite(expr_match.expr.to_token_stream(), scope, &[], &mut reads);
        let mut group = Group::new(Delimiter::Parenthesis, tokens);
        group.set_span(expr_match.expr.span());
        quote::quote_spanned!(expr_match.expr.span()=> &#group)
    };
    // Parts can be read by the arms only if the scrutinee is a place: a binding or a
    // field of one, which each reader can match again.
    let place = place.filter(|(root, _)| scope.part(root).is_none() && scope.knows(root));
    let depth = scope.depth();
    let root_own = place
        .as_ref()
        .is_some_and(|(root, _)| scope.is_own_binding(root));
    let mut arms = Vec::new();
    let mut segments: Vec<String> = Vec::new();
    for (index, arm) in expr_match.arms.iter().enumerate() {
        let bound = bound_names(&arm.pat);
        let names: Vec<String> = bound.iter().map(ToString::to_string).collect();
        let guard = arm
            .guard
            .as_ref()
            .map(|(_, guard)| rewrite(guard.to_token_stream(), scope, &names, &mut reads));
        let mut segment = segment_of(&arm.pat).unwrap_or_else(|| format!("arm{index}"));
        let base = segment.clone();
        let mut n = index;
        while segments.contains(&segment) {
            segment = format!("{base}{n}");
            n += 1;
        }
        segments.push(segment.clone());
        let label = match &arm.guard {
            Some((_, guard)) => format!(
                "{} if {}",
                pretty(&arm.pat.to_token_stream()),
                pretty(&guard.to_token_stream())
            ),
            None => pretty(&arm.pat.to_token_stream()),
        };
        let (stmts, close): (Vec<Stmt>, Span) = match &*arm.body {
            Expr::Block(body) if body.label.is_none() => (
                body.block.stmts.clone(),
                body.block.brace_token.span.close(),
            ),
            other => (vec![Stmt::Expr(other.clone(), None)], other.span()),
        };
        let define_parts = |inner: &mut Scope| {
            for name in &bound {
                let (root, fields) = place.clone().unwrap_or_else(|| (name.clone(), Vec::new()));
                let part = Rc::new(Part {
                    root,
                    fields,
                    pattern: arm.pat.clone(),
                    outcome,
                    place: place.is_some(),
                    depth,
                    root_own,
                });
                inner.define_part(name, part);
            }
        };
        let arm_at = (id, index as u32);
        let (nodes, tail) = arm_body(
            &stmts,
            close,
            scope,
            errors,
            BodyOf::Arm {
                in_loop,
                optional: false,
                branch: id,
            },
            arm_at,
            define_parts,
        );
        arms.push(Arm {
            label,
            segment,
            pattern: Some((arm.pat.clone(), guard)),
            nodes,
            tail: Some(tail?),
        });
    }
    if arms.is_empty() {
        errors.at(&expr_match.expr, "a workflow `match` has at least one arm");
        return None;
    }
    note_reads(&reads, scope, errors);
    Some(Branch {
        keyword,
        reads,
        text: pretty(&expr_match.expr.to_token_stream()),
        form: Form::Match { scrutinee },
        arms,
        id,
    })
}

/// An arm's nodes and its value.
type ArmBody = (Vec<super::Node>, Option<Tail>);

/// One arm's body in a scope of its own (`of` says what may end it): its nodes and its
/// value.
fn arm_body(
    stmts: &[Stmt],
    close: Span,
    scope: &mut Scope,
    errors: &mut Errors,
    of: BodyOf,
    (branch, arm): (u32, u32),
    define: impl FnOnce(&mut Scope),
) -> ArmBody {
    let mut inner = scope.enter_arm(branch, arm);
    define(&mut inner);
    let (nodes, tail) = block(stmts, close, &mut inner, errors, of);
    scope.leave_arm(inner, errors);
    (nodes, tail)
}

/// Notes the reads of a decision in the scope: each is checked (so a loop's body imports
/// it) and read by reference.
fn note_reads(reads: &[Read], scope: &mut Scope, errors: &mut Errors) {
    for read in reads {
        match &read.part {
            Some(part) if !part.place => not_a_place(&read.ident, errors),
            Some(part) if part.outcome && part.depth < scope.depth() => {
                outcome_part_in_loop(&read.ident, part, errors);
            }
            Some(_) => scope.read(&read.ident, None),
            None => {
                scope.check(&read.ident, None, errors);
                scope.read(&read.ident, None);
            }
        }
    }
}

/// The error for a read, inside a `for` in its arm, of a part of what became of a
/// binding: the loop would need the binding to have succeeded.
pub(super) fn outcome_part_in_loop(ident: &Ident, part: &Part, errors: &mut Errors) {
    errors.at(
        ident,
        format!(
            "`{ident}` is a part of what became of `{}`, which a `for` inside the arm cannot \
             read (a loop reads only values that exist): pass `{ident}` to a task before the \
             loop, and read that task's value in it",
            part.root
        ),
    );
}

/// The error for a read of a part of a `match` on a computed value.
pub(super) fn not_a_place(ident: &Ident, errors: &mut Errors) {
    errors.at(
        ident,
        format!(
            "`{ident}` is a part of a computed value, which nothing outside the `match` can \
             read: match a binding or a field of one (`match processed.kind`), or have a \
             task compute the value"
        ),
    );
}

/// `tokens` with every name of `scope` (but `shadowed`) replaced by a read of its value,
/// `(*__aqueduct_c_name)` spanned at the name; each name read once in `reads`. A name
/// is a token not after `.` or `::`, and not before `::`, `!` or a lone `:`.
fn rewrite(
    tokens: TokenStream,
    scope: &Scope,
    shadowed: &[String],
    reads: &mut Vec<Read>,
) -> TokenStream {
    // The condition's own names (a closure's parameters, a `let` in a block) are not the
    // workflow's, wherever they appear in it.
    let mut own = shadowed.to_vec();
    locals(&tokens, &mut own);
    replace(tokens, scope, &own, reads)
}

/// The names `tokens` binds itself: the parameters of its closures (`|x, y: u32|` at the
/// start of an expression) and the names its `let`s bind.
fn locals(tokens: &TokenStream, out: &mut Vec<String>) {
    let tokens: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let is = |at: usize, ch: char| matches!(tokens.get(at), Some(TokenTree::Punct(p)) if p.as_char() == ch);
    let mut index = 0;
    while index < tokens.len() {
        match &tokens[index] {
            TokenTree::Group(group) => locals(&group.stream(), out),
            TokenTree::Ident(ident) if ident == "let" => {
                let mut at = index + 1;
                while at < tokens.len() && !is(at, '=') && !is(at, ';') {
                    if let TokenTree::Ident(name) = &tokens[at] {
                        out.push(name.to_string());
                    }
                    if is(at, ':') {
                        break;
                    }
                    at += 1;
                }
            }
            // A closure starts an expression: at the start, or after `(`, `,`, `=` or
            // `move`; `a | b` is an `or`.
            TokenTree::Punct(p) if p.as_char() == '|' => {
                let starts = index == 0
                    || is(index - 1, ',')
                    || is(index - 1, '=')
                    || matches!(&tokens[index - 1], TokenTree::Ident(i) if i == "move");
                if starts {
                    let mut at = index + 1;
                    let mut typed = false;
                    while at < tokens.len() && !is(at, '|') {
                        match &tokens[at] {
                            TokenTree::Ident(name) if !typed => out.push(name.to_string()),
                            TokenTree::Punct(p) if p.as_char() == ':' => typed = true,
                            TokenTree::Punct(p) if p.as_char() == ',' => typed = false,
                            _ => {}
                        }
                        at += 1;
                    }
                    index = at;
                }
            }
            _ => {}
        }
        index += 1;
    }
}

/// `tokens` with every name of `scope` but `shadowed` replaced by a read of its value.
fn replace(
    tokens: TokenStream,
    scope: &Scope,
    shadowed: &[String],
    reads: &mut Vec<Read>,
) -> TokenStream {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len());
    for (index, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(group) => {
                let inner = replace(group.stream(), scope, shadowed, reads);
                let mut rewritten = Group::new(group.delimiter(), inner);
                rewritten.set_span(group.span());
                out.push(TokenTree::Group(rewritten));
            }
            TokenTree::Ident(ident)
                if is_name(&tokens, index)
                    && scope.knows(ident)
                    && !shadowed.contains(&ident.to_string()) =>
            {
                if !reads.iter().any(|read| read.ident == *ident) {
                    reads.push(Read {
                        ident: ident.clone(),
                        part: scope.part(ident),
                        outcome: false,
                    });
                }
                let local = read_local(ident);
                let mut group = Group::new(
                    Delimiter::Parenthesis,
                    quote::quote_spanned!(ident.span()=> *#local),
                );
                group.set_span(ident.span());
                out.push(TokenTree::Group(group));
            }
            other => out.push(other.clone()),
        }
    }
    out.into_iter().collect()
}

/// Whether the identifier at `index` is a value's name rather than a field, a path's
/// segment, a macro's name or a field of a struct literal.
fn is_name(tokens: &[TokenTree], index: usize) -> bool {
    let punct = |at: Option<&TokenTree>, ch: char| matches!(at, Some(TokenTree::Punct(p)) if p.as_char() == ch);
    let before = index.checked_sub(1).and_then(|i| tokens.get(i));
    let before_that = index.checked_sub(2).and_then(|i| tokens.get(i));
    let after = tokens.get(index + 1);
    // `a.name`, `path::name`, `'name`: not a value's name. `field: name` is.
    let path = punct(before, ':') && punct(before_that, ':');
    if punct(before, '.') || path || punct(before, '\'') {
        return false;
    }
    // `name::…`, `name!(…)`, `name: value` (a struct literal's field).
    !(punct(after, ':') || punct(after, '!'))
}

/// The scrutinee as a place: a binding and its fields (`processed.kind`).
fn place(expr: &Expr) -> Option<(Ident, Vec<(syn::Token![.], syn::Member)>)> {
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
fn names_outcome(pat: &Pat) -> bool {
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
fn segment_of(pat: &Pat) -> Option<String> {
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

/// Tokens as a person writes them: `Format::Csv(text)`, `p.score > 80`, not
/// `Format :: Csv (text)`.
fn pretty(tokens: &TokenStream) -> String {
    let mut text = tokens.to_string();
    for (spaced, tight) in [
        (" :: ", "::"),
        (" . ", "."),
        (" (", "("),
        ("( ", "("),
        (" )", ")"),
        (" ,", ","),
        ("& ", "&"),
        ("! ", "!"),
        (" !", "!"),
        (" [", "["),
        ("[ ", "["),
        (" ]", "]"),
        (" : ", ": "),
    ] {
        text = text.replace(spaced, tight);
    }
    text
}
