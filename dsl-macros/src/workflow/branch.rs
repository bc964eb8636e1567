//! `if` and `match` in a workflow: their syntax turned into a [`Branch`], and the
//! scope of each arm. What a condition reads is `condition.rs`'s; what a pattern means,
//! `patterns.rs`'s.
//!
//! The conditions, patterns and guards stay the user's Rust: the expansion puts them
//! in a real `if`/`match` in the decision's closure, so a condition that is not a
//! `bool` or a `match` that is not exhaustive is rustc's own error at the user's token.

use std::rc::Rc;

use proc_macro2::{Delimiter, Group, Ident, Span};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Expr, ExprIf, ExprMatch, Stmt};

use super::condition::{pretty, read_local, rewrite};
use super::parse::{BodyOf, block};
use super::patterns::{bound_names, names_outcome, place, segment_of};
use super::validate::Scope;
use super::{Arm, Branch, Form, Part, Read, Tail};
use crate::errors::Errors;

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
