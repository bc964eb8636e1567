//! `workflow!`: parse → validate → expand.
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

use std::collections::HashMap;

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, Expr, ExprCall, ExprPath, FnArg, Local, Member, Pat, ReturnType, Stmt, Token,
    Type, Visibility,
};

use crate::errors::{Errors, closest};

/// The macro input as written.
struct Input {
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

/// A validated workflow.
struct Workflow {
    attrs: Vec<Attribute>,
    /// `#[durable]` or `#[durable(version = N)]`: the version.
    durable: Option<u32>,
    vis: Visibility,
    name: Ident,
    params: Vec<(Ident, Type)>,
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

enum Init {
    Call(Call),
    Loop(Loop),
    /// `other(&a, &b).await`: another workflow, run as one node.
    Workflow(Call),
}

/// `for item in &collection { let x = task(item); tail(&x, &outer) }`
struct Loop {
    /// `#[concurrency = N]`: at most N items at once.
    cap: Option<u32>,
    item: Ident,
    collection: Arg,
    /// The enclosing scope's bindings the body reads, in first-use order.
    imports: Vec<Ident>,
    nodes: Vec<Node>,
    /// A task call or another workflow's.
    tail: Tail,
}

struct Call {
    task: ExprPath,
    paren: Span,
    args: Vec<Arg>,
}

/// `&root.field.field`, or a loop's item alone.
struct Arg {
    and: Option<Token![&]>,
    root: Ident,
    fields: Vec<(Token![.], Member)>,
}

enum Tail {
    Call(Call),
    Workflow(Call),
    Binding(Ident),
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input: Input = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    match validate(input) {
        Ok(workflow) => emit(&workflow),
        Err(error) => error.to_compile_error(),
    }
}

const STATEMENT_FORM: &str = "every statement of a workflow is `let name = task(&input, …);`";

fn validate(mut input: Input) -> syn::Result<Workflow> {
    let mut errors = Errors::default();
    let mut scope = Scope::default();
    let durable = durable(&mut input.attrs, &mut errors);

    let mut params = Vec::new();
    for param in &input.params {
        match param {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(p)
                    if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() =>
                {
                    scope.define(&p.ident, &mut errors);
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

    let (nodes, tail) = block(&input.body, &mut scope, &mut errors, false);

    errors.finish()?;
    let ret = match input.ret {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => *ty,
    };
    Ok(Workflow {
        attrs: input.attrs,
        durable,
        vis: input.vis,
        name: input.name,
        params,
        ret,
        nodes,
        tail: tail.expect("a tail exists when there are no errors"),
    })
}

/// Takes `#[durable]` / `#[durable(version = N)]` out of the workflow's attributes.
fn durable(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Option<u32> {
    let at = attrs
        .iter()
        .position(|attr| attr.path().is_ident("durable"))?;
    let attr = attrs.remove(at);
    match &attr.meta {
        syn::Meta::Path(_) => Some(1),
        syn::Meta::List(list) => {
            let parsed = list.parse_args_with(|input: ParseStream<'_>| {
                let key: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: syn::LitInt = input.parse()?;
                if key != "version" {
                    return Err(syn::Error::new(
                        key.span(),
                        "the one `durable` option is `version = N`",
                    ));
                }
                value.base10_parse::<u32>()
            });
            match parsed {
                Ok(version) => Some(version),
                Err(error) => {
                    errors.push(syn::Error::new(
                        error.span(),
                        format!("{error}: write `#[durable]` or `#[durable(version = 2)]`"),
                    ));
                    None
                }
            }
        }
        syn::Meta::NameValue(pair) => {
            errors.at(pair, "write `#[durable]` or `#[durable(version = 2)]`");
            None
        }
    }
}

/// The statements of a workflow's body or of a loop's body: `let`s, then the tail.
/// A loop's tail must be a task call (its value is one item's result).
fn block(
    body: &Block,
    scope: &mut Scope,
    errors: &mut Errors,
    in_loop: bool,
) -> (Vec<Node>, Option<Tail>) {
    let stmts = &body.stmts;
    let (tail_stmt, lets) = match stmts.split_last() {
        Some((Stmt::Expr(tail, None), lets)) => (Some(tail), lets),
        _ => (None, &stmts[..]),
    };
    // Every binding by name, so a use before definition can point at the later `let`.
    for stmt in lets {
        if let Some(ident) = let_ident(stmt) {
            scope
                .later
                .entry(ident.to_string())
                .or_insert_with(|| ident.clone());
        }
    }

    let mut nodes = Vec::new();
    for stmt in lets {
        match stmt {
            Stmt::Local(local) => {
                if let Some(node) = node(local, scope, errors) {
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

    let what = if in_loop {
        "a loop's body"
    } else {
        "a workflow"
    };
    let tail = match tail_stmt {
        Some(Expr::Call(call)) => self::call(call, None, scope, errors).map(Tail::Call),
        Some(Expr::Await(awaited)) => {
            subflow(&awaited.base, None, scope, errors).map(Tail::Workflow)
        }
        Some(Expr::Path(path)) if path.path.get_ident().is_some() && !in_loop => {
            let ident = path.path.get_ident().expect("checked above");
            scope.check(ident, None, errors);
            Some(Tail::Binding(ident.clone()))
        }
        Some(other) if in_loop => {
            errors.at(
                other,
                "a loop's body ends with a task call: its value is that item's result",
            );
            None
        }
        Some(other) => {
            errors.at(
                other,
                "a workflow ends with its output: a task call `task(&input)` or a binding `name`",
            );
            None
        }
        None => {
            let example = lets.iter().rev().find_map(let_ident).map_or_else(
                || "`task(&input)`".to_owned(),
                |last| format!("e.g. `{last}`"),
            );
            let expected = if in_loop {
                "a task call"
            } else {
                "a task call or a binding"
            };
            errors.push(syn::Error::new(
                body.brace_token.span.close(),
                format!(
                    "{what} ends with its output: before this `}}`, add {expected} without `;`, {example}"
                ),
            ));
            None
        }
    };
    (nodes, tail)
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

fn node(local: &Local, scope: &mut Scope, errors: &mut Errors) -> Option<Node> {
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
        Expr::Call(call) => self::call(call, binding.as_ref(), scope, errors).map(Init::Call),
        Expr::ForLoop(for_loop) => {
            self::for_loop(for_loop, binding.as_ref(), scope, errors).map(Init::Loop)
        }
        Expr::Await(awaited) => {
            subflow(&awaited.base, binding.as_ref(), scope, errors).map(Init::Workflow)
        }
        other => {
            errors.at(
                other,
                "expected a task call such as `task(&input)`, another workflow's \
                 `other(&input).await`, or a `for item in &collection { … }`",
            );
            None
        }
    };
    let binding = binding?;
    scope.define(&binding, errors);
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
    // A rejected pattern's names still count as items, so their uses raise no more errors.
    let mut rejected = Scope::default();
    if item.is_none() {
        rejected.define_all(&for_loop.pat);
    }
    let collection = match self::arg(&for_loop.expr, errors) {
        Some(arg) if (arg.and.is_some() || scope.is_item(&arg.root)) && arg.fields.is_empty() => {
            scope.check(&arg.root, binding, errors);
            Some(arg)
        }
        Some(_) => {
            errors.at(
                &for_loop.expr,
                "a workflow `for` goes over a binding by reference: `for item in &collection`",
            );
            None
        }
        None => None,
    };
    let mut inner = scope.enter(item.as_ref());
    for (name, ident) in rejected.defined {
        inner.items.push(name.clone());
        inner.defined.insert(name, ident);
    }
    let (nodes, tail) = block(&for_loop.body, &mut inner, errors, true);
    let imports = scope.leave(inner, errors);
    let tail = match tail? {
        Tail::Binding(_) => return None,
        tail => tail,
    };
    Some(Loop {
        cap,
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
    let call = self::call(call, binding, scope, errors)?;
    for arg in &call.args {
        if let Some((dot, _)) = arg.fields.first() {
            errors.at(
                dot,
                "a workflow takes whole bindings: pass `&name`, not a field of one",
            );
            return None;
        }
    }
    Some(call)
}

/// `#[concurrency = N]` on a workflow `for`, the one attribute it takes.
fn loop_cap(attrs: &[Attribute], errors: &mut Errors) -> Option<u32> {
    let mut cap = None;
    for attr in attrs {
        let syn::Meta::NameValue(pair) = &attr.meta else {
            errors.at(
                attr,
                "a workflow `for` takes one attribute, `#[concurrency = N]`",
            );
            continue;
        };
        if !pair.path.is_ident("concurrency") {
            errors.at(
                &pair.path,
                "a workflow `for` takes one attribute, `#[concurrency = N]`",
            );
            continue;
        }
        let value = &pair.value;
        match value {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(int),
                ..
            }) => match int.base10_parse::<u32>() {
                Ok(n) if n > 0 => cap = Some(n),
                _ => errors.at(
                    int,
                    "`concurrency` is a whole number from 1: how many items may run at once",
                ),
            },
            other => errors.at(
                other,
                "`concurrency` is a whole number from 1: write e.g. `#[concurrency = 4]`",
            ),
        }
    }
    cap
}

fn call(
    call: &ExprCall,
    binding: Option<&Ident>,
    scope: &mut Scope,
    errors: &mut Errors,
) -> Option<Call> {
    let task = match &*call.func {
        Expr::Path(path) if path.qself.is_none() => Some(path.clone()),
        other => {
            errors.at(other, "expected the name of a `#[task]` function");
            None
        }
    };
    let mut args = Vec::new();
    for arg in &call.args {
        if let Some(parsed) = self::arg(arg, errors) {
            if parsed.and.is_none() && !scope.is_item(&parsed.root) && !scope.is_inner(&parsed.root)
            {
                errors.at(
                    arg,
                    format!(
                        "task inputs are passed by reference: write `&{}`",
                        arg.to_token_stream()
                    ),
                );
                continue;
            }
            scope.check(&parsed.root, binding, errors);
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
        // A bare name: allowed for a loop's item, which is already a reference.
        Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
            return Some(Arg {
                and: None,
                root: path.path.get_ident().expect("checked above").clone(),
                fields: Vec::new(),
            });
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

/// The names a statement can read: parameters and earlier bindings, and in a loop's
/// body its item and the enclosing scope's names.
#[derive(Default)]
struct Scope {
    defined: HashMap<String, Ident>,
    /// Every binding of the body, to tell "defined later" from "not defined".
    later: HashMap<String, Ident>,
    /// In a loop's body: the names of the enclosing scopes, readable as imports.
    outer: HashMap<String, Ident>,
    /// The enclosing names this body read, in first-use order.
    imports: Vec<Ident>,
    /// The items of this loop and of the loops around it: passed without `&`.
    items: Vec<String>,
    /// Names bound inside loops of this scope, for a clear error when used outside.
    inner: HashMap<String, Ident>,
}

impl Scope {
    /// The scope of a loop's body inside this one.
    fn enter(&self, item: Option<&Ident>) -> Scope {
        let mut outer = self.outer.clone();
        outer.extend(
            self.defined
                .iter()
                .map(|(name, ident)| (name.clone(), ident.clone())),
        );
        let mut inner = Scope {
            outer,
            later: self.later.clone(),
            items: self.items.clone(),
            ..Scope::default()
        };
        if let Some(item) = item {
            inner.items.push(item.to_string());
            inner.defined.insert(item.to_string(), item.clone());
        }
        inner
    }

    /// Back from a loop's body: its names stay inside, its imports from beyond this
    /// scope become this scope's imports too. Returns the body's imports.
    fn leave(&mut self, body: Scope, errors: &mut Errors) -> Vec<Ident> {
        for (name, ident) in body.defined.into_iter().chain(body.inner) {
            self.inner.entry(name).or_insert(ident);
        }
        for import in &body.imports {
            self.check(import, None, errors);
        }
        body.imports
    }

    fn is_item(&self, ident: &Ident) -> bool {
        self.items.contains(&ident.to_string())
    }

    /// Whether `ident` is bound inside a loop of this scope (and so not readable here).
    fn is_inner(&self, ident: &Ident) -> bool {
        self.inner.contains_key(&ident.to_string())
    }
    fn define(&mut self, ident: &Ident, errors: &mut Errors) {
        if let Some(first) = self.defined.get(&ident.to_string()) {
            let mut error = syn::Error::new(
                ident.span(),
                format!(
                    "`{ident}` is already defined: every node of a workflow needs its own name"
                ),
            );
            error.combine(syn::Error::new(
                first.span(),
                format!("`{ident}` is first defined here"),
            ));
            errors.push(error);
        } else {
            self.defined.insert(ident.to_string(), ident.clone());
        }
    }

    /// Defines every name a rejected pattern binds, so its mistake is reported once
    /// rather than again at every use.
    fn define_all(&mut self, pat: &Pat) {
        match pat {
            Pat::Ident(p) => {
                self.defined
                    .entry(p.ident.to_string())
                    .or_insert_with(|| p.ident.clone());
            }
            Pat::Tuple(tuple) => tuple.elems.iter().for_each(|p| self.define_all(p)),
            Pat::TupleStruct(tuple) => tuple.elems.iter().for_each(|p| self.define_all(p)),
            Pat::Struct(s) => s.fields.iter().for_each(|f| self.define_all(&f.pat)),
            Pat::Type(typed) => self.define_all(&typed.pat),
            Pat::Reference(reference) => self.define_all(&reference.pat),
            _ => {}
        }
    }

    /// Checks that `ident`, read by the node bound to `reader`, is already defined.
    fn check(&mut self, ident: &Ident, reader: Option<&Ident>, errors: &mut Errors) {
        let name = ident.to_string();
        if self.defined.contains_key(&name) {
            return;
        }
        if self.outer.contains_key(&name) {
            if !self.imports.iter().any(|import| *import == name) {
                self.imports.push(ident.clone());
            }
            return;
        }
        if let Some(inside) = self.inner.get(&name) {
            let mut error = syn::Error::new(
                ident.span(),
                format!("`{ident}` exists only inside its loop: use the loop's result instead"),
            );
            error.combine(syn::Error::new(
                inside.span(),
                format!("`{ident}` is bound here, inside a `for`"),
            ));
            return errors.push(error);
        }
        if reader.is_some_and(|reader| *reader == name) {
            errors.at(
                ident,
                format!("`{ident}` is this task's own output: a task cannot read what it produces (no cycles)"),
            );
        } else if let Some(later) = self.later.get(&name) {
            let mut error = syn::Error::new(
                ident.span(),
                format!(
                    "`{ident}` is used before it is defined: move this statement after `let {ident}` \
                     (inputs must be defined first, so a workflow cannot have a cycle)"
                ),
            );
            error.combine(syn::Error::new(
                later.span(),
                format!("`{ident}` is defined here"),
            ));
            errors.push(error);
        } else {
            let mut message = format!(
                "cannot find `{ident}`: a task input must be a workflow parameter or an earlier `let` binding"
            );
            if let Some(close) = self.similar(&name) {
                message.push_str(&format!("; did you mean `{close}`?"));
            }
            errors.at(ident, message);
        }
    }

    fn similar(&self, name: &str) -> Option<&str> {
        closest(name, self.defined.keys().map(String::as_str))
    }
}

/// The span of a name the expansion makes for itself (the builder, an argument's local,
/// a parameter's or binding's handle): `Span::mixed_site()` hygiene, so the user's
/// tokens (a task's name, a path in a type) never resolve to it and a user's name never
/// shadows it; located at `at`, so rustc still points at the user's token.
fn hygienic(at: Span) -> Span {
    Span::mixed_site().located_at(at)
}

/// One of the expansion's own locals (`__aqueduct_builder`, …), located at `at`. Only
/// the names are hygienic: the tokens around them keep the spans they had, so rustc
/// reports at the user's tokens as before.
fn local(name: &str, at: Span) -> Ident {
    Ident::new(name, hygienic(at))
}

/// The local holding the `Handle` of a parameter, binding or loop item. Hygienic, so it
/// never shadows a task of the user's name (`let double = double(&x);`) or anything
/// else the user's tokens name; prefixed, so it never meets one of the expansion's own
/// locals, which are hygienic too (a binding `__aqueduct_builder` has the handle
/// `__aqueduct_h___aqueduct_builder`, not the builder's name).
fn handle(ident: &Ident) -> Ident {
    format_ident!("__aqueduct_h_{}", ident, span = hygienic(ident.span()))
}

/// The handle of `ident` as a value, spanned at the user's token: rustc reports a
/// problem with it (its type cannot be saved, or iterated) there, as it does for the
/// user's own code, rather than as coming from the macro.
fn read(ident: &Ident) -> TokenStream {
    let handle = handle(ident);
    quote_spanned!(ident.span()=> ::core::convert::identity(#handle))
}

fn emit(workflow: &Workflow) -> TokenStream {
    let Workflow {
        attrs,
        vis,
        name,
        ret,
        ..
    } = workflow;
    let p = quote!(::aqueduct::__private);
    let param_names: Vec<_> = workflow.params.iter().map(|(ident, _)| ident).collect();
    let param_handles: Vec<_> = param_names.iter().map(|ident| handle(ident)).collect();
    let param_types: Vec<_> = workflow.params.iter().map(|(_, ty)| ty).collect();
    let nodes = emit_nodes(&workflow.nodes);
    // A durable workflow's checkpoints read every top-level name.
    let unread = workflow
        .durable
        .is_none()
        .then(|| unread(param_names.iter().copied(), &workflow.nodes, &workflow.tail));
    // A durable workflow checkpoints every top-level node and saves its parameters as
    // the run's input; each call is spanned at the binding, so a value serde cannot
    // save is reported there.
    let durable = workflow.durable.map(|version| {
        let bindings = param_names
            .iter()
            .copied()
            .chain(workflow.nodes.iter().map(|node| &node.binding));
        let checkpoints = bindings.map(|binding| {
            let (builder, handle) = (local("__aqueduct_builder", binding.span()), read(binding));
            quote_spanned!(binding.span()=> #builder.checkpoint(#handle);)
        });
        quote_spanned! {Span::mixed_site()=>
            __aqueduct_builder.durable(#version);
            #(#checkpoints)*
        }
    });
    let tail = match &workflow.tail {
        Tail::Binding(ident) => handle(ident).to_token_stream(),
        Tail::Call(call) => emit_call(call, &task_name(call)),
        Tail::Workflow(call) => emit_subflow(call, &task_name(call)),
    };
    let tail_span = match &workflow.tail {
        Tail::Binding(ident) => ident.span(),
        Tail::Call(call) | Tail::Workflow(call) => call.task.span(),
    };
    let (builder, tail_local) = (
        local("__aqueduct_builder", tail_span),
        local("__aqueduct_tail", tail_span),
    );
    let durable_tail = workflow
        .durable
        .map(|_| quote_spanned!(tail_span=> #builder.checkpoint(::core::convert::identity(#tail_local));));
    let output = quote_spanned!(tail_span=> #p::output::<#ret, _>(#tail_local));
    let workflow_doc = format!(
        "The built graph of the workflow [`{name}()`](fn@{name}): its description and its runs with a report."
    );
    let workflow_type = quote!(#p::Workflow<(#(#param_types,)*), #ret>);
    // The static is in a block of its own: the builder's closure is outside it, so a
    // binding named like it does not clash with it.
    let built = quote_spanned! {Span::mixed_site()=>
        let __aqueduct_workflow: &'static #p::OnceLock<#workflow_type> = {
            static WORKFLOW: #p::OnceLock<#workflow_type> = #p::OnceLock::new();
            &WORKFLOW
        };
        __aqueduct_workflow.get_or_init(|| {
            let (mut __aqueduct_builder, (#(#param_handles,)*)) =
                #p::Builder::<(#(#param_types,)*)>::new(
                    ::core::stringify!(#name),
                    [#(::core::stringify!(#param_names)),*],
                );
            #nodes
            #unread
            #durable
            let __aqueduct_tail = #tail;
            #durable_tail
            __aqueduct_builder.output(#output)
        })
    };
    quote! {
        #(#attrs)*
        #vis fn #name(#(#param_names: #param_types),*)
            -> impl ::core::future::Future<Output = ::core::result::Result<#ret, #p::Error>>
                + ::core::marker::Send + 'static
        {
            #name::workflow().run((#(#param_names,)*))
        }

        #[doc = #workflow_doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {
            _private: (),
        }

        impl #p::Subflow for #name {
            type Params = (#(#param_types,)*);
            type Output = #ret;
            fn workflow() -> &'static #workflow_type {
                #name::workflow()
            }
        }

        impl #name {
            /// The workflow, built once: [`graph()`](::aqueduct::Workflow::graph) describes
            /// it without running it; [`runner()`](::aqueduct::Workflow::runner) configures a
            /// run (fail-fast, timeout, cancellation) and returns its report too.
            #vis fn workflow() -> &'static #workflow_type {
                #built
            }
        }
    }
}

/// For each of a scope's names that nothing reads, `{ let name = handle; }` with the
/// user's token: the handles are hygienic, so rustc would not warn of an unused
/// variable at a binding nothing depends on; this binding is what it warns of, with
/// its `_name` hint, and it shadows nothing.
fn unread<'a>(
    defined: impl IntoIterator<Item = &'a Ident>,
    nodes: &'a [Node],
    tail: &'a Tail,
) -> TokenStream {
    let roots = |call: &'a Call| call.args.iter().map(|arg| &arg.root);
    let mut reads: Vec<&Ident> = Vec::new();
    for node in nodes {
        match &node.init {
            Init::Call(call) | Init::Workflow(call) => reads.extend(roots(call)),
            Init::Loop(body) => {
                reads.push(&body.collection.root);
                reads.extend(&body.imports);
            }
        }
    }
    match tail {
        Tail::Call(call) | Tail::Workflow(call) => reads.extend(roots(call)),
        Tail::Binding(ident) => reads.push(ident),
    }
    defined
        .into_iter()
        .chain(nodes.iter().map(|node| &node.binding))
        .filter(|name| !reads.contains(name))
        .map(|name| {
            let handle = handle(name);
            quote!({ let #name = #handle; })
        })
        .collect()
}

/// A tail call's node is named after its task.
fn task_name(call: &Call) -> String {
    call.task
        .path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// `let binding = …;` for every node, in order; `binding` is the node's [`handle`].
fn emit_nodes(nodes: &[Node]) -> TokenStream {
    let p = quote!(::aqueduct::__private);
    nodes
        .iter()
        .map(|node| {
            let binding = handle(&node.binding);
            let annotation = node.annotation.as_ref().map(|ty| quote!(: #p::Handle<#ty>));
            let name = node.binding.to_string();
            let add = match &node.init {
                Init::Call(call) => emit_call(call, &name),
                Init::Loop(body) => emit_loop(body, &name),
                Init::Workflow(call) => emit_subflow(call, &name),
            };
            quote!(let #binding #annotation = #add;)
        })
        .collect()
}

/// `__aqueduct_builder.fan_out(…)` for a loop: the body is built by a closure that
/// receives the body's builder, the item's handle and the imported handles, bound to
/// the same handle names as outside, so the body's calls read exactly as written.
fn emit_loop(body: &Loop, node_name: &str) -> TokenStream {
    let Loop {
        cap,
        item,
        collection,
        imports,
        nodes,
        tail,
    } = body;
    let collection = read(&collection.root);
    let item_handle = handle(item);
    let imports: Vec<_> = imports.iter().map(handle).collect();
    let unread = unread([item], nodes, tail);
    let nodes = emit_nodes(nodes);
    let tail = match tail {
        Tail::Call(call) => emit_call(call, &task_name(call)),
        Tail::Workflow(call) => emit_subflow(call, &task_name(call)),
        Tail::Binding(_) => unreachable!("a loop's tail is a call"),
    };
    let cap = cap.map(|n| {
        quote_spanned!(Span::mixed_site()=> __aqueduct_builder.cap_items(__aqueduct_fan_out, #n);)
    });
    quote_spanned! {Span::mixed_site()=> {
        let __aqueduct_fan_out = __aqueduct_builder.fan_out(
            #node_name,
            #collection,
            ::core::stringify!(#item),
            (#(#imports,)*),
            |__aqueduct_builder, #item_handle, (#(#imports,)*)| {
                #nodes
                #unread
                #tail
            },
        );
        #cap
        __aqueduct_fan_out
    }}
}

/// `__aqueduct_builder.subflow(…)` for another workflow run as one node; its inputs
/// are checked against its parameters by `Arguments`.
fn emit_subflow(call: &Call, node_name: &str) -> TokenStream {
    let p = quote!(::aqueduct::__private);
    let path = &call.task;
    let roots = call.args.iter().map(|arg| handle(&arg.root));
    let workflow = quote_spanned!(path.span()=> <#path as #p::Subflow>::workflow());
    let mut inputs = Group::new(Delimiter::Parenthesis, quote!(#(#roots,)*));
    inputs.set_span(call.paren);
    quote_spanned!(Span::mixed_site()=> __aqueduct_builder.subflow(#node_name, #workflow, #inputs))
}

/// `__aqueduct_builder.node(…)` for one task call: the closure calls the user's function
/// with the user's argument tokens, so rustc reports type and arity errors at them.
fn emit_call(call: &Call, node_name: &str) -> TokenStream {
    let p = quote!(::aqueduct::__private);
    let task = &call.task;
    let inputs = call.args.iter().map(|arg| read(&arg.root));
    // Each argument is bound before the call, so its type is known (`&T`, or
    // `&Outcome<T>` for a tolerant parameter) when rustc checks the call, and deref
    // coercions (`&Vec<T>` to `&[T]`) apply as in a hand-written call.
    let mut locals = Vec::new();
    let mut picks = Vec::new();
    let mut args = Vec::new();
    for (i, arg) in call.args.iter().enumerate() {
        let last_span = arg
            .fields
            .last()
            .map_or(arg.root.span(), |(_, member)| member.span());
        let local = format_ident!("__aqueduct_arg{}", i, span = hygienic(last_span));
        let fields = arg.fields.iter().map(|(dot, member)| quote!(#dot #member));
        let root = handle(&arg.root);
        let picked = quote_spanned!(arg.root.span()=> __aqueduct_task.arg::<#i, _>(__aqueduct_input.slots(), #root));
        picks.push(if arg.fields.is_empty() {
            picked
        } else {
            quote!(&#picked #(#fields)*)
        });
        let and = arg
            .and
            .map_or_else(|| quote_spanned!(arg.root.span()=> &), |and| quote!(#and));
        let star = quote_spanned!(last_span=> *);
        // In parentheses spanned at the user's token, so the argument's span is the
        // user's `&input` rather than the hygienic local's.
        let mut deref = Group::new(Delimiter::Parenthesis, quote!(#star #local));
        deref.set_span(last_span);
        args.push(quote!(#and #deref));
        locals.push(local);
    }
    // The picks name the task's marker and the closure's input without hygiene, as the
    // user's tokens do: rustc's reports at those tokens stay as they are. They do so in
    // a block of their own, where the only user tokens are field names, so no name of
    // the user's can meet them; the task's call, outside it, sees only hygienic locals.
    let pick = (!picks.is_empty()).then(|| {
        let (task, input) = (
            Ident::new("__aqueduct_task", Span::call_site()),
            Ident::new("__aqueduct_input", Span::call_site()),
        );
        quote_spanned! {Span::mixed_site()=>
            let (#(#locals,)*) = {
                let #task = __aqueduct_task;
                let #input = __aqueduct_input;
                (#(#picks,)*)
            };
        }
    });
    let mut parens = Group::new(Delimiter::Parenthesis, quote!(#(#args),*));
    parens.set_span(call.paren);
    let marker = quote_spanned!(task.span()=> <#task as #p::HasMarker>::MARKER);
    let the_call: TokenStream = task
        .to_token_stream()
        .into_iter()
        .chain([TokenTree::Group(parens)])
        .collect();
    quote_spanned! {Span::mixed_site()=> {
        let __aqueduct_task = #marker;
        __aqueduct_builder.node(
            __aqueduct_task.info(),
            #node_name,
            (#(#inputs,)*),
            move |__aqueduct_input| {
                #pick
                __aqueduct_task.step(#the_call)
            },
        )
    }}
}
