//! `workflow!`: parse → validate → expand.
//!
//! The body is a list of `let name = task(&input, …);` and a tail (a task call or a
//! binding). Validation checks every input against the parameters and earlier
//! bindings, so a missing dependency, a use before definition or a self-dependency is
//! reported at the user's token before rustc sees anything. Types and arity are left
//! to rustc: the expansion calls the user's function with the user's argument tokens.

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
    vis: Visibility,
    name: Ident,
    params: Vec<(Ident, Type)>,
    ret: Type,
    nodes: Vec<Node>,
    tail: Tail,
}

/// `let binding = task(&a, &b.field);`
struct Node {
    binding: Ident,
    annotation: Option<Type>,
    call: Call,
}

struct Call {
    task: ExprPath,
    paren: Span,
    args: Vec<Arg>,
}

/// `&root.field.field`
struct Arg {
    and: Token![&],
    root: Ident,
    fields: Vec<(Token![.], Member)>,
}

enum Tail {
    Call(Call),
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

fn validate(input: Input) -> syn::Result<Workflow> {
    let mut errors = Errors::default();
    let mut scope = Scope::default();

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

    let stmts = &input.body.stmts;
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
                if let Some(node) = node(local, &mut scope, &mut errors) {
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

    let tail = match tail_stmt {
        Some(Expr::Call(call)) => self::call(call, None, &scope, &mut errors).map(Tail::Call),
        Some(Expr::Path(path)) if path.path.get_ident().is_some() => {
            let ident = path.path.get_ident().expect("checked above");
            scope.check(ident, None, &mut errors);
            Some(Tail::Binding(ident.clone()))
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
            errors.push(syn::Error::new(
                input.body.brace_token.span.close(),
                format!(
                    "a workflow ends with its output: before this `}}`, add a task call or a \
                     binding without `;`, {example}"
                ),
            ));
            None
        }
    };

    errors.finish()?;
    let ret = match input.ret {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => *ty,
    };
    Ok(Workflow {
        attrs: input.attrs,
        vis: input.vis,
        name: input.name,
        params,
        ret,
        nodes,
        tail: tail.expect("a tail exists when there are no errors"),
    })
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
    let call = match &*init.expr {
        Expr::Call(call) => self::call(call, binding.as_ref(), scope, errors),
        other => {
            errors.at(other, "expected a task call such as `task(&input)`");
            None
        }
    };
    let binding = binding?;
    scope.define(&binding, errors);
    Some(Node {
        binding,
        annotation,
        call: call?,
    })
}

fn call(
    call: &ExprCall,
    binding: Option<&Ident>,
    scope: &Scope,
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
        if let Some(arg) = self::arg(arg, errors) {
            scope.check(&arg.root, binding, errors);
            args.push(arg);
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
    let Expr::Reference(reference) = arg else {
        errors.at(
            arg,
            format!(
                "task inputs are passed by reference: write `&{}`",
                arg.to_token_stream()
            ),
        );
        return None;
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
                    and: reference.and_token,
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

/// The names a statement can read: parameters and earlier bindings.
#[derive(Default)]
struct Scope {
    defined: HashMap<String, Ident>,
    /// Every binding of the body, to tell "defined later" from "not defined".
    later: HashMap<String, Ident>,
}

impl Scope {
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
    fn check(&self, ident: &Ident, reader: Option<&Ident>, errors: &mut Errors) {
        let name = ident.to_string();
        if self.defined.contains_key(&name) {
            return;
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
    let param_types: Vec<_> = workflow.params.iter().map(|(_, ty)| ty).collect();
    let nodes = workflow.nodes.iter().map(|node| {
        let binding = &node.binding;
        let annotation = node.annotation.as_ref().map(|ty| quote!(: #p::Handle<#ty>));
        let add = emit_call(&node.call, &binding.to_string());
        quote!(let #binding #annotation = #add;)
    });
    let tail = match &workflow.tail {
        Tail::Binding(ident) => ident.to_token_stream(),
        Tail::Call(call) => {
            let task_name = call
                .task
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default();
            emit_call(call, &task_name)
        }
    };
    let tail_span = match &workflow.tail {
        Tail::Binding(ident) => ident.span(),
        Tail::Call(call) => call.task.span(),
    };
    let output = quote_spanned!(tail_span=> #p::output::<#ret, _>(__aqueduct_tail));
    let workflow_doc = format!(
        "The built graph of the workflow [`{name}()`](fn@{name}): its description and its runs with a report."
    );
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

        impl #name {
            /// The workflow, built once: [`graph()`](::aqueduct::Workflow::graph) describes
            /// it without running it; [`runner()`](::aqueduct::Workflow::runner) configures a
            /// run (fail-fast, timeout, cancellation) and returns its report too.
            #vis fn workflow() -> &'static #p::Workflow<(#(#param_types,)*), #ret> {
                static WORKFLOW: #p::OnceLock<#p::Workflow<(#(#param_types,)*), #ret>> = #p::OnceLock::new();
                WORKFLOW.get_or_init(|| {
                    let (mut __aqueduct_builder, (#(#param_names,)*)) =
                        #p::Builder::<(#(#param_types,)*)>::new(
                            ::core::stringify!(#name),
                            [#(::core::stringify!(#param_names)),*],
                        );
                    #(#nodes)*
                    let __aqueduct_tail = #tail;
                    __aqueduct_builder.output(#output)
                })
            }
        }
    }
}

/// `__aqueduct_builder.node(…)` for one task call: the closure calls the user's function
/// with the user's argument tokens, so rustc reports type and arity errors at them.
fn emit_call(call: &Call, node_name: &str) -> TokenStream {
    let p = quote!(::aqueduct::__private);
    let task = &call.task;
    let roots = call.args.iter().map(|arg| &arg.root);
    let outcomes: Vec<Ident> = call
        .args
        .iter()
        .enumerate()
        .map(|(i, arg)| format_ident!("__aqueduct_in{}", i, span = arg.root.span()))
        .collect();
    // Each argument is bound before the call, so its type is known (`&T`, or
    // `&Outcome<T>` for a tolerant parameter) when rustc checks the call, and deref
    // coercions (`&Vec<T>` to `&[T]`) apply as in a hand-written call.
    let mut bindings = Vec::new();
    let mut args = Vec::new();
    for (i, (arg, outcome)) in call.args.iter().zip(&outcomes).enumerate() {
        let last_span = arg
            .fields
            .last()
            .map_or(arg.root.span(), |(_, member)| member.span());
        let local = format_ident!("__aqueduct_arg{}", i, span = last_span);
        let fields = arg.fields.iter().map(|(dot, member)| quote!(#dot #member));
        let picked = quote_spanned!(arg.root.span()=> __aqueduct_task.arg::<#i, _>(#outcome));
        bindings.push(if arg.fields.is_empty() {
            quote!(let #local = #picked;)
        } else {
            quote!(let #local = &#picked #(#fields)*;)
        });
        let and = arg.and;
        let star = quote_spanned!(last_span=> *);
        args.push(quote!(#and #star #local));
    }
    let mut parens = Group::new(Delimiter::Parenthesis, quote!(#(#args),*));
    parens.set_span(call.paren);
    let marker = quote_spanned!(task.span()=> <#task as #p::HasMarker>::MARKER);
    let the_call: TokenStream = task
        .to_token_stream()
        .into_iter()
        .chain([TokenTree::Group(parens)])
        .collect();
    quote! {{
        let __aqueduct_task = #marker;
        __aqueduct_builder.node(
            __aqueduct_task.info(),
            #node_name,
            (#(#roots,)*),
            move |__aqueduct_input| {
                let (#(#outcomes,)*) = __aqueduct_input.outcomes();
                #(#bindings)*
                __aqueduct_task.step(#the_call)
            },
        )
    }}
}
