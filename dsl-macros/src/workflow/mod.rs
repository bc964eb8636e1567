//! `workflow!`: parse → validate → expand, and the data model the steps share.
//!
//! The body is a list of `let name = task(&input, …);` and a tail (a task call or a
//! binding). Validation checks every input against the parameters and earlier
//! bindings, so a missing dependency, a use before definition or a self-dependency is
//! reported at the user's token before rustc sees anything. Types and arity are left
//! to rustc: the expansion calls the user's function with the user's argument tokens.
//!
//! The expansion's own names (the builder, the locals of a node's closure, and the
//! handle of each parameter and binding) are hygienic (`Span::mixed_site()`), so a
//! parameter or binding may be named like a task (`let double = double(&x);`) or like
//! any of them, and a task too. The tokens around those names keep the user's spans,
//! so rustc's errors point at the user's tokens as before.
//!
//! - [`parse`]: the input's syntax, turned statement by statement into the model below;
//! - [`attrs`]: the attributes a workflow and its `for` loops take;
//! - [`validate`]: the [`Scope`](validate::Scope) of names each statement may read;
//! - [`expand`]: the generated code, read from the model.

mod attrs;
mod branch;
mod condition;
mod expand;
mod expand_branch;
mod expand_call;
mod expand_chain;
mod parse;
mod patterns;
mod validate;

use std::rc::Rc;

use proc_macro2::{Ident, Span, TokenStream};
use syn::{Attribute, ExprPath, Member, Pat, Token, Type, Visibility};

use crate::crate_path::CratePath;

/// A validated workflow.
struct Workflow {
    attrs: Vec<Attribute>,
    /// `#[durable]` or `#[durable(version = N)]`: the version, and where it is written.
    durable: Option<(u32, Span)>,
    /// `#[aqueduct(crate = path)]`: the path the expansion names Aqueduct by.
    crate_path: CratePath,
    vis: Visibility,
    name: Ident,
    params: Vec<(Ident, Type)>,
    /// How many of the last parameters are resources (`#[resource]`).
    resources: usize,
    /// Whether a parameter is moved into a task or a `for`.
    moves_param: bool,
    ret: Type,
    nodes: Vec<Node>,
    tail: Tail,
}

/// `let binding = task(&a, &b.field);` or `let binding = for item in &c { … };`
struct Node {
    binding: Ident,
    annotation: Option<Type>,
    init: Init,
}

/// What a node runs.
enum Init {
    Call(Call),
    Loop(Loop),
    /// `other(&a, &b).await`: another workflow, run as one node.
    Workflow(Call),
    /// `if cond { … } else { … }` or `match scrutinee { pattern => …, … }`.
    Branch(Branch),
}

/// An `if` (its `else if`s are arms of the same decision) or a `match`: a decision
/// step, the arms, and the value of the arm taken.
struct Branch {
    /// `if` or `match`, as written: where rustc's reports about the decision point.
    keyword: Ident,
    /// The names the decision reads (conditions, scrutinee, guards), first use first.
    reads: Vec<Read>,
    /// What it decides on, as written, for the graph.
    text: String,
    form: Form,
    arms: Vec<Arm>,
    /// Its id in the scope's checks: the reads of its arms' values carry it, so that
    /// moving the branch's value moves them (checked, not expanded).
    id: u32,
}

/// What picks the arm.
enum Form {
    /// `if c0 { … } else if c1 { … } else { … }`: a condition per arm but the last if
    /// there is an `else`; without one, the last arm is the missing `else`.
    If {
        conditions: Vec<TokenStream>,
        has_else: bool,
    },
    /// `match scrutinee { … }`; `outcome` for a `match` on what became of a binding
    /// (`Outcome::Ok(v) => …`), whose failure it handles.
    Match { scrutinee: TokenStream },
}

/// One arm: its pattern (for a `match`), its body's nodes and its value.
struct Arm {
    /// `then`/`else` for an `if`, the pattern as written for a `match`: what the graph
    /// shows on the arm.
    label: String,
    /// The arm in its nodes' names (`label.then.praise`): `then`, `else`, or the
    /// variant a `match` arm's pattern names.
    segment: String,
    /// For a `match`: the pattern, and its guard rewritten to read the decision's names.
    pattern: Option<(Pat, Option<TokenStream>)>,
    nodes: Vec<Node>,
    /// `None` only for the missing `else` of an `if`.
    tail: Option<Tail>,
}

/// A name a decision reads: a binding (by reference, or its outcome for a `match` on
/// what became of it) or a part another `match` bound.
#[derive(Clone)]
struct Read {
    ident: Ident,
    part: Option<Rc<Part>>,
    outcome: bool,
}

/// A name a `match` arm's pattern binds: a part of the scrutinee, read by reference.
/// Reading it reads the scrutinee's binding and matches the arm's pattern again.
struct Part {
    /// The binding the scrutinee is, or is a field of.
    root: Ident,
    /// The scrutinee's fields after the root (`.kind` in `match processed.kind`).
    fields: Vec<(Token![.], Member)>,
    /// The pattern, its own guard left out (the decision checked it).
    pattern: Pat,
    /// Whether the `match` is on the root's outcome (`Outcome::Ok(v)`).
    outcome: bool,
    /// Whether the scrutinee is a place (a binding or a field of one), which a reader
    /// can match again; a part of a computed value cannot be read outside the decision.
    place: bool,
    /// How many `for` bodies deep the `match` is: a read deeper crosses a loop.
    depth: u32,
    /// Whether `root` is a binding of the loop's body the `match` is in (or of the
    /// workflow), not an enclosing scope's.
    root_own: bool,
}

/// `for item in &collection { let x = task(item); tail(&x, &outer) }`, or
/// `for item in collection { … }`, which takes the collection and moves each item into
/// its own run.
struct Loop {
    /// `#[concurrency = N]`: at most N items at once.
    cap: Option<u32>,
    /// Whether the loop takes its collection (`for item in collection`).
    by_value: bool,
    item: Ident,
    collection: Arg,
    /// The enclosing scope's bindings the body reads, in first-use order.
    imports: Vec<Ident>,
    nodes: Vec<Node>,
    /// A task call or another workflow's.
    tail: Tail,
}

/// `task(&a, &b.field)`: the called path, the span of its parentheses, its inputs.
struct Call {
    task: ExprPath,
    paren: Span,
    args: Vec<Arg>,
}

/// `&root.field.field` (shared), `root` moved into the task, or a borrowed loop's item
/// alone (shared: it is a reference already).
struct Arg {
    and: Option<Token![&]>,
    root: Ident,
    fields: Vec<(Token![.], Member)>,
    /// Written without `&` and not a borrowed item: the value is moved into the task.
    moved: bool,
    /// When `root` is a part a `match` arm bound: the part.
    part: Option<Rc<Part>>,
}

/// The last expression of a body: its output.
enum Tail {
    Call(Call),
    Workflow(Call),
    Binding(Ident),
}

/// `workflow! { … }`: the generated code, or every mistake in the input as compile errors.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input: parse::Input = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    match parse::workflow(input) {
        Ok(workflow) => expand::emit(&workflow),
        Err(error) => error.to_compile_error(),
    }
}

/// `ident` located at `at` (raw identifiers stay raw).
fn at_span(ident: &Ident, at: Span) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(at);
    ident
}
