//! The input's syntax and its turning into the data model: every statement's form is
//! checked here, every name it reads through the [`Scope`].

use proc_macro2::Ident;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Block, Expr, ExprCall, FnArg, Local, Pat, ReturnType, Stmt, Token, Visibility,
};

use super::attrs::{crate_path, durable, loop_cap};
use super::validate::{OPTION_VALUE, Scope};
use super::{Arg, Call, Init, Loop, Node, Tail, Workflow};
use super::{branch, patterns};
use crate::errors::Errors;

/// The macro input as written.
pub(super) struct Input {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    params: Punctuated<FnArg, Token![,]>,
    ret: ReturnType,
    body: Block,
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        input.parse::<Token![fn]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected `fn`: a workflow is written `pub fn name(param: Type) -> Output { … }`",
            )
        })?;
        let name = input.parse()?;
        let content;
        syn::parenthesized!(content in input);
        let params = content.parse_terminated(FnArg::parse, Token![,])?;
        let ret = input.parse()?;
        let body = input.parse()?;
        Ok(Self {
            attrs,
            vis,
            name,
            params,
            ret,
            body,
        })
    }
}

/// What a workflow `for` goes over.
const LOOP_OVER: &str = "a workflow `for` goes over a binding: `for item in &collection` \
                         (shared) or `for item in collection` (moved into the loop)";

/// What an arm inside a `for` may end with.
const LOOP_OVER_RANGE: &str = "a workflow `for` goes over a binding (a parameter or a \
                               task's output), not a range: have a task return the items (`let \
                               pages = numbers(&count);`, returning `Vec<u32>`), then write \
                               `for page in &pages`";

const ARM_VALUE_IN_LOOP: &str = "inside a `for`, an arm ends with a task call or a binding \
                                 made in the loop's body: the item and the bindings outside \
                                 the loop are the loop's, not the item's result";

const STATEMENT_FORM: &str = "every statement of a workflow is `let name = task(&input, …);`";

/// The workflow `input` describes, or every mistake in it.
pub(super) fn workflow(mut input: Input) -> syn::Result<Workflow> {
    let mut errors = Errors::default();
    let mut scope = Scope::fresh();
    let durable = durable(&mut input.attrs, &mut errors);
    let crate_path = crate_path(&mut input.attrs, &mut errors);

    let mut params = Vec::new();
    let mut resources: Vec<Ident> = Vec::new();
    for param in &input.params {
        match param {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(p)
                    if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() =>
                {
                    scope.define(&p.ident, &mut errors);
                    let resource = resource_attr(&typed.attrs, &mut errors);
                    if resource {
                        resources.push(p.ident.clone());
                    } else if let Some(first) = resources.first() {
                        errors.at(
                            &p.ident,
                            format!(
                                "declare `{}` before the resource `{first}`: a workflow's \
                                 resources come after its other parameters",
                                p.ident
                            ),
                        );
                    }
                    params.push((p.ident.clone(), (*typed.ty).clone()));
                }
                pat => {
                    errors.at(pat, "a workflow parameter is a plain name: `name: Type`");
                    scope.define_all(pat);
                }
            },
            FnArg::Receiver(receiver) => errors.at(receiver, "a workflow takes no `self`"),
        }
    }

    let close = input.body.brace_token.span.close();
    let (nodes, tail) = block(
        &input.body.stmts,
        close,
        &mut scope,
        &mut errors,
        BodyOf::Workflow,
    );
    let moves_param = scope.moves_param(&params);
    for (token, task) in scope.moves_of(&resources) {
        errors.at(
            token,
            format!(
                "`{token}` is a resource, which every task of the run shares: {task} reads \
                 it with `&{token}`, it cannot take it"
            ),
        );
    }
    scope.check_moves(&mut errors);

    errors.finish()?;
    let ret = match input.ret {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => *ty,
    };
    Ok(Workflow {
        attrs: input.attrs,
        durable,
        crate_path,
        vis: input.vis,
        name: input.name,
        resources: resources.len(),
        params,
        moves_param,
        ret,
        nodes,
        tail: tail.expect("a tail exists when there are no errors"),
    })
}

/// What a body is, for what may end it.
#[derive(Clone, Copy)]
pub(super) enum BodyOf {
    /// The workflow's own: any name may be its output.
    Workflow,
    /// A loop's: one of its own bindings, the item's result.
    Loop,
    /// An arm of branch `branch` (inside a loop's body or not): any name but, in a
    /// loop, the item or an enclosing scope's. `optional` for the `then` of an `if`
    /// without `else`, whose value is moved into an `Option`.
    Arm {
        in_loop: bool,
        optional: bool,
        branch: u32,
    },
}

impl BodyOf {
    fn in_loop(self) -> bool {
        matches!(self, BodyOf::Loop | BodyOf::Arm { in_loop: true, .. })
    }
}

/// The statements of a body: `let`s, then the tail (a task call, another workflow, a
/// `for`, an `if` or `match`, or a binding). `close` is where a missing tail is
/// reported.
pub(super) fn block(
    stmts: &[Stmt],
    close: proc_macro2::Span,
    scope: &mut Scope,
    errors: &mut Errors,
    of: BodyOf,
) -> (Vec<Node>, Option<Tail>) {
    let in_loop = of.in_loop();
    let (tail_stmt, lets) = match stmts.split_last() {
        Some((Stmt::Expr(tail, None), lets)) => (Some(tail), lets),
        _ => (None, stmts),
    };
    // Every binding by name, so a use before definition can point at the later `let`.
    for stmt in lets {
        if let Some(ident) = let_ident(stmt) {
            scope.bind_later(ident);
        }
    }

    let mut nodes = Vec::new();
    for stmt in lets {
        match stmt {
            Stmt::Local(local) => {
                if let Some(node) = node(local, scope, errors, in_loop) {
                    nodes.push(node);
                }
            }
            Stmt::Expr(Expr::Call(_), Some(_)) => errors.at(
                stmt,
                format!("{STATEMENT_FORM}: bind this call's output to a name (`let done = …;`)"),
            ),
            other => errors.at(other, STATEMENT_FORM),
        }
    }

    // How the tail, if it is a name, is read: an arm's value is shared with the
    // branch, or moved into its `Option`.
    let moved_into = match of {
        BodyOf::Arm { optional: true, .. } => Some(OPTION_VALUE.to_owned()),
        _ => None,
    };
    let tail = match tail_stmt {
        // A `for` as the output: a node of its own, named `for`, which is the output.
        Some(Expr::ForLoop(for_loop)) => {
            let name = proc_macro2::Ident::new("for", for_loop.for_token.span);
            let body = self::for_loop(for_loop, Some(&name), scope, errors);
            scope.define(&name, errors);
            read_tail(scope, &name, moved_into, of);
            body.map(|body| {
                nodes.push(Node {
                    binding: name.clone(),
                    annotation: None,
                    init: Init::Loop(body),
                });
                Tail::Binding(name)
            })
        }
        // An `if` or `match` as the output: a node of its own, named after its keyword.
        Some(expr @ (Expr::If(_) | Expr::Match(_))) => {
            let branch = branch::branch(expr, scope, errors, in_loop);
            branch.map(|branch| {
                let name = branch.keyword.clone();
                scope.define(&name, errors);
                scope.bind_branch(&name, branch.id);
                read_tail(scope, &name, moved_into, of);
                nodes.push(Node {
                    binding: name.clone(),
                    annotation: None,
                    init: Init::Branch(branch),
                });
                Tail::Binding(name)
            })
        }
        Some(Expr::Call(call)) => self::call(call, None, scope, errors, false).map(Tail::Call),
        Some(Expr::Await(awaited)) => {
            subflow(&awaited.base, None, scope, errors).map(Tail::Workflow)
        }
        Some(Expr::Path(path)) if path.qself.is_none() && path.path.get_ident().is_some() => {
            let ident = path.path.get_ident().expect("checked above");
            named_tail(ident, scope, errors, of, moved_into)
        }
        Some(other) => {
            let message = match of {
                BodyOf::Workflow => {
                    "a workflow ends with its output: a task call `task(&input)`, a binding \
                     `name`, a `for`, an `if` or a `match`"
                }
                BodyOf::Loop => {
                    "a loop's body must end with its result for the item: a task call, a \
                     `for`, an `if`, a `match`, or a binding made in the body (`let r = …; r`)"
                }
                BodyOf::Arm { .. } => {
                    "an arm ends with its value: a task call, a `for`, an `if`, a `match`, or \
                     a binding (a constant too is a task's output: `#[task] fn none() -> T`)"
                }
            };
            errors.at(other, message);
            None
        }
        None => {
            let example = lets.iter().rev().find_map(let_ident).map_or_else(
                || "`task(&input)`".to_owned(),
                |last| format!("e.g. `{last}`"),
            );
            let (what, expected) = match of {
                BodyOf::Workflow => ("a workflow", "a task call, a `for` or a binding"),
                BodyOf::Loop => (
                    "a loop's body",
                    "a task call, a `for` or a binding made in the body",
                ),
                BodyOf::Arm { .. } => ("an arm", "a task call, a `for` or a binding"),
            };
            errors.push(syn::Error::new(
                close,
                format!(
                    "{what} ends with its output: before this `}}`, add {expected} without `;`, {example}"
                ),
            ));
            None
        }
    };
    (nodes, tail)
}

/// Notes the read of a body's tail, `name`: the workflow's output, a loop item's
/// result, or an arm's value (moved into `moved_into`, if the branch moves it).
fn read_tail(scope: &mut Scope, name: &Ident, moved_into: Option<String>, of: BodyOf) {
    match of {
        BodyOf::Arm { branch, .. } => scope.read_as_value_of(name, moved_into, branch),
        _ => scope.read_as_output(name),
    }
}

/// A body that ends with a name: a workflow with any, a loop with one of its own
/// bindings, an arm with any it can read (in a loop, not the item or an enclosing
/// scope's name) or the whole value a `match` arm bound (`Outcome::Ok(data) => data`).
fn named_tail(
    ident: &Ident,
    scope: &mut Scope,
    errors: &mut Errors,
    of: BodyOf,
    moved_into: Option<String>,
) -> Option<Tail> {
    if let (BodyOf::Arm { .. }, Some(part)) = (of, scope.part(ident)) {
        if !part.place || !patterns::whole_value(&part, ident) {
            errors.at(
                ident,
                format!(
                    "`{ident}` is a part of `{}`, which an arm cannot give as its value (a \
                     branch shares its arm's value in place, never a piece of one): pass it to \
                     a task that makes the value, `…({ident})`; to give `{}` itself when it \
                     succeeded, match what became of it: `Outcome::Ok({ident}) => {ident}`",
                    part.root, part.root
                ),
            );
            return None;
        }
        // The arm's value is the whole value of the binding matched on: in a loop's
        // body, one of the body's own.
        if matches!(of, BodyOf::Arm { in_loop: true, .. }) && !part.root_own {
            errors.at(ident, ARM_VALUE_IN_LOOP);
            return None;
        }
        let root = super::at_span(&part.root, ident.span());
        read_tail(scope, &root, moved_into, of);
        return Some(Tail::Binding(root));
    }
    let allowed = match of {
        BodyOf::Workflow => true,
        BodyOf::Loop | BodyOf::Arm { in_loop: true, .. } => scope.is_own_binding(ident),
        BodyOf::Arm { in_loop: false, .. } => true,
    };
    if !allowed && scope.knows(ident) {
        let message = match of {
            BodyOf::Loop => {
                "a loop's body must end with its result for the item: a task call, a `for`, \
                 an `if`, a `match`, or a binding made in the body (`let r = …; r`)"
            }
            _ => ARM_VALUE_IN_LOOP,
        };
        errors.at(ident, message);
        return None;
    }
    scope.check(ident, None, errors);
    read_tail(scope, ident, moved_into, of);
    Some(Tail::Binding(ident.clone()))
}

fn let_ident(stmt: &Stmt) -> Option<&Ident> {
    let Stmt::Local(local) = stmt else {
        return None;
    };
    match &local.pat {
        Pat::Ident(p) => Some(&p.ident),
        Pat::Type(typed) => match &*typed.pat {
            Pat::Ident(p) => Some(&p.ident),
            _ => None,
        },
        _ => None,
    }
}

fn node(local: &Local, scope: &mut Scope, errors: &mut Errors, in_loop: bool) -> Option<Node> {
    let (pat, annotation) = match &local.pat {
        Pat::Type(typed) => (&*typed.pat, Some((*typed.ty).clone())),
        pat => (pat, None),
    };
    let binding = match pat {
        Pat::Ident(p) => {
            if let Some(mutability) = &p.mutability {
                errors.at(
                    mutability,
                    "workflow bindings are shared with every reader: remove `mut`",
                );
            }
            if let Some(by_ref) = &p.by_ref {
                errors.at(
                    by_ref,
                    "remove `ref`: a binding already names a shared output",
                );
            }
            Some(p.ident.clone())
        }
        other => {
            errors.at(
                other,
                "bind a task's output to one name; to use a part of it, pass a field: `&output.field`",
            );
            scope.define_all(other);
            None
        }
    };
    let Some(init) = &local.init else {
        errors.at(
            local,
            format!("{STATEMENT_FORM}: this `let` has no task call"),
        );
        return None;
    };
    if let Some((else_token, _)) = &init.diverge {
        errors.at(else_token, "a workflow `let` has no `else`");
    }
    let init = match &*init.expr {
        Expr::Call(call) => {
            self::call(call, binding.as_ref(), scope, errors, false).map(Init::Call)
        }
        Expr::ForLoop(for_loop) => {
            self::for_loop(for_loop, binding.as_ref(), scope, errors).map(Init::Loop)
        }
        Expr::Await(awaited) => {
            subflow(&awaited.base, binding.as_ref(), scope, errors).map(Init::Workflow)
        }
        expr @ (Expr::If(_) | Expr::Match(_)) => {
            branch::branch(expr, scope, errors, in_loop).map(Init::Branch)
        }
        other => {
            errors.at(
                other,
                "expected a task call such as `task(&input)`, another workflow's \
                 `other(&input).await`, a `for item in &collection { … }`, an `if` or a \
                 `match`",
            );
            None
        }
    };
    let binding = binding?;
    scope.define(&binding, errors);
    if let Some(Init::Branch(branch)) = &init {
        scope.bind_branch(&binding, branch.id);
    }
    Some(Node {
        binding,
        annotation,
        init: init?,
    })
}

fn for_loop(
    for_loop: &syn::ExprForLoop,
    binding: Option<&Ident>,
    scope: &mut Scope,
    errors: &mut Errors,
) -> Option<Loop> {
    let cap = loop_cap(&for_loop.attrs, errors);
    if let Some(label) = &for_loop.label {
        errors.at(
            label,
            "a workflow `for` has no label: it never breaks or continues",
        );
    }
    let item = match &*for_loop.pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() => {
            Some(p.ident.clone())
        }
        other => {
            errors.at(
                other,
                "the item of a workflow `for` is one name: `for item in &collection`",
            );
            None
        }
    };
    // A field (`&a.f`, `a.f`) is not a binding: one message for both. Nor is a range
    // or any other expression: the items are a task's output.
    let collection = if let Expr::Range(range) = &*for_loop.expr {
        errors.at(range, LOOP_OVER_RANGE);
        None
    } else if !matches!(&*for_loop.expr, Expr::Path(_) | Expr::Reference(_)) {
        errors.at(&for_loop.expr, LOOP_OVER);
        None
    } else {
        match self::arg(&for_loop.expr, errors) {
            Some(arg) if scope.part(&arg.root).is_some() => {
                errors.at(
                    &arg.root,
                    format!(
                        "a workflow `for` goes over a binding; `{}` is a part a `match` arm \
                         bound: have a task return the collection, and go over that",
                        arg.root
                    ),
                );
                None
            }
            Some(mut arg) if arg.fields.is_empty() => {
                arg.moved = arg.and.is_none() && !scope.is_borrowed_item(&arg.root);
                scope.check(&arg.root, binding, errors);
                scope.read(&arg.root, arg.moved.then(|| "this `for`".to_owned()));
                Some(arg)
            }
            Some(_) => {
                errors.at(&for_loop.expr, LOOP_OVER);
                None
            }
            None => None,
        }
    };
    let by_value = collection.as_ref().is_some_and(|arg| arg.moved);
    let mut inner = scope.enter(item.as_ref(), &for_loop.pat, by_value);
    let close = for_loop.body.brace_token.span.close();
    let (nodes, tail) = block(
        &for_loop.body.stmts,
        close,
        &mut inner,
        errors,
        BodyOf::Loop,
    );
    let imports = scope.leave(inner, errors);
    let tail = tail?;
    Some(Loop {
        cap,
        by_value,
        item: item?,
        collection: collection?,
        imports,
        nodes,
        tail,
    })
}

/// `other(&a, &b).await`: another workflow's call, its inputs whole bindings.
fn subflow(
    base: &Expr,
    binding: Option<&Ident>,
    scope: &mut Scope,
    errors: &mut Errors,
) -> Option<Call> {
    let Expr::Call(call) = base else {
        errors.at(
            base,
            "`.await` in a workflow runs another workflow: `other(&input, …).await`",
        );
        return None;
    };
    let call = self::call(call, binding, scope, errors, true)?;
    let mut whole = true;
    for (dot, _) in call.args.iter().filter_map(|arg| arg.fields.first()) {
        errors.at(
            dot,
            "a workflow takes whole bindings: pass `&name`, not a field of one",
        );
        whole = false;
    }
    whole.then_some(call)
}

/// A call's task and inputs. Another workflow's (`shared_only`) are all shared: a name
/// without `&` is refused there, and read as shared so it is reported once.
fn call(
    call: &ExprCall,
    binding: Option<&Ident>,
    scope: &mut Scope,
    errors: &mut Errors,
    shared_only: bool,
) -> Option<Call> {
    let task = match &*call.func {
        Expr::Path(path) if path.qself.is_none() => Some(path.clone()),
        other => {
            errors.at(other, "expected the name of a `#[task]` function");
            None
        }
    };
    let into = match &task {
        Some(path) => format!("`{}`", path.to_token_stream()).replace(' ', ""),
        None => "this task".to_owned(),
    };
    let mut args = Vec::new();
    for arg in &call.args {
        if let Some(mut parsed) = self::arg(arg, errors) {
            if let Some(part) = scope.part(&parsed.root) {
                if !part.place {
                    branch::not_a_place(&parsed.root, errors);
                    continue;
                }
                if part.outcome && part.depth < scope.depth() {
                    branch::outcome_part_in_loop(&parsed.root, &part, errors);
                    continue;
                }
                if shared_only {
                    errors.at(
                        &parsed.root,
                        format!(
                            "`{}` is a part a `match` arm bound: another workflow takes whole \
                             bindings",
                            parsed.root
                        ),
                    );
                    continue;
                }
                parsed.part = Some(part);
            }
            // Without `&`: a borrowed loop's item is shared, anything else is moved.
            parsed.moved = parsed.and.is_none() && !scope.is_borrowed_item(&parsed.root);
            scope.check(&parsed.root, binding, errors);
            if parsed.moved && shared_only {
                errors.at(
                    &parsed.root,
                    format!(
                        "another workflow's inputs are shared: write `&{}`",
                        parsed.root
                    ),
                );
                scope.read(&parsed.root, None);
                continue;
            }
            scope.read(&parsed.root, parsed.moved.then(|| into.clone()));
            args.push(parsed);
        }
    }
    (args.len() == call.args.len()).then_some(())?;
    Some(Call {
        task: task?,
        paren: call.paren_token.span.join(),
        args,
    })
}

fn arg(arg: &Expr, errors: &mut Errors) -> Option<Arg> {
    let reference = match arg {
        Expr::Reference(reference) => reference,
        // A bare name: moved into the task, or a borrowed loop's item (a reference
        // already); the caller knows which.
        Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
            return Some(Arg {
                and: None,
                root: path.path.get_ident().expect("checked above").clone(),
                fields: Vec::new(),
                moved: false,
                part: None,
            });
        }
        Expr::Field(_) => {
            errors.at(
                arg,
                format!(
                    "a field cannot be moved out of a binding: share it with `&{}`, or have \
                     a task return the part to move as a binding of its own",
                    arg.to_token_stream()
                ),
            );
            return None;
        }
        _ => {
            errors.at(
                arg,
                format!(
                    "task inputs are passed by reference: write `&{}`",
                    arg.to_token_stream()
                ),
            );
            return None;
        }
    };
    if let Some(mutability) = &reference.mutability {
        errors.at(
            mutability,
            "tasks share their inputs: pass `&input`, not `&mut input`",
        );
        return None;
    }
    let mut fields = Vec::new();
    let mut place = &*reference.expr;
    loop {
        match place {
            Expr::Field(field) => {
                fields.push((field.dot_token, field.member.clone()));
                place = &field.base;
            }
            Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
                fields.reverse();
                return Some(Arg {
                    and: Some(reference.and_token),
                    root: path.path.get_ident().expect("checked above").clone(),
                    fields,
                    moved: false,
                    part: None,
                });
            }
            other => {
                errors.at(
                    other,
                    "a task input is a parameter or binding, or a field of one: `&name` or `&name.field`",
                );
                return None;
            }
        }
    }
}

/// Whether a workflow parameter's attributes declare it a resource (`#[resource]`);
/// any other attribute is a mistake.
fn resource_attr(attrs: &[Attribute], errors: &mut Errors) -> bool {
    let mut resource = false;
    for attr in attrs {
        if attr.path().is_ident("resource") && matches!(attr.meta, syn::Meta::Path(_)) {
            resource = true;
        } else {
            errors.at(
                attr,
                "a workflow parameter takes one attribute, `#[resource]`: a value each run \
                 is given (a client, a pool), never saved",
            );
        }
    }
    resource
}
