//! A task's fakes: the fake constructor `name::fake(f)`, and the look for a fake in
//! force that begins the function's body (see `__private::Callee`). Both spell the
//! task's signature as a trait object (a fake's type), `dyn Fn(&In) -> Return`, where
//! the task's own types are visible: a private input type never reaches a public item.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{FnArg, ItemFn, Lifetime, Pat, Type};

/// Whether the task can be faked: not a `const fn` (the look for a fake is not const),
/// and no parameter of an `impl Trait` type (a fake's type must name every input).
/// Such a task has no `fake`, and its body is as written.
pub(crate) fn fakeable(item: &ItemFn) -> bool {
    let impl_trait = item.sig.inputs.iter().any(|input| match input {
        FnArg::Typed(typed) => quote!(#typed)
            .into_iter()
            .any(|token| matches!(token, proc_macro2::TokenTree::Ident(ident) if ident == "impl")),
        FnArg::Receiver(_) => false,
    });
    item.sig.constness.is_none() && !impl_trait
}

/// The local for input `i` of a call the expansion makes itself: hygienic, so a task
/// or an input named like one is still the one meant.
pub(crate) fn arg_local(i: usize) -> proc_macro2::Ident {
    format_ident!("__aqueduct_arg{i}", span = Span::mixed_site())
}

/// The task's input types, in order.
pub(crate) fn input_types(item: &ItemFn) -> Vec<&Type> {
    item.sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(&*typed.ty),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// A fake's type: `dyn Fn(&In) -> Return + Send + Sync`; for an async task, returning
/// a boxed `Send` future that may borrow the inputs.
fn call_type(item: &ItemFn, ret: &Type, is_async: bool, p: &TokenStream) -> TokenStream {
    let types = input_types(item);
    if !is_async {
        return quote! {
            dyn ::core::ops::Fn(#(#types),*) -> #ret + ::core::marker::Send + ::core::marker::Sync
        };
    }
    // One lifetime for every borrowed input, which the boxed future may hold.
    let lifetime = Lifetime::new("'__aqueduct_in", Span::mixed_site());
    let mut borrows = false;
    let named: Vec<Type> = types
        .iter()
        .map(|ty| match ty {
            Type::Reference(reference)
                if reference
                    .lifetime
                    .as_ref()
                    .is_none_or(|lifetime| lifetime.ident == "_") =>
            {
                borrows = true;
                let mut reference = reference.clone();
                reference.lifetime = Some(lifetime.clone());
                Type::Reference(reference)
            }
            ty => (*ty).clone(),
        })
        .collect();
    let (binder, bound) = if borrows {
        (quote!(for<#lifetime>), quote!(#lifetime))
    } else {
        (TokenStream::new(), quote!('static))
    };
    quote! {
        dyn #binder ::core::ops::Fn(#(#named),*) -> #p::Pin<::std::boxed::Box<
            dyn ::core::future::Future<Output = #ret> + ::core::marker::Send + #bound
        >> + ::core::marker::Send + ::core::marker::Sync
    }
}

/// The task's function, its body begun with a look for a fake in force: with one, the
/// function returns the fake's result for its inputs. A function with parameters that
/// are patterns (not plain names) gets names of its own for them, and calls its body,
/// as written, as an inner function: its patterns and its temporaries stay as they
/// were.
pub(crate) fn with_fake_check(
    item: &ItemFn,
    ret: &Type,
    is_async: bool,
    p: &TokenStream,
) -> ItemFn {
    let mut item = item.clone();
    let name = item.sig.ident.clone();
    let call_type = call_type(&item, ret, is_async, p);
    let patterns = item.sig.inputs.iter().any(|input| {
        matches!(input, FnArg::Typed(typed) if !matches!(
            &*typed.pat,
            Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none()
        ))
    });
    let mut args = Vec::new();
    let mut body = None;
    if patterns {
        let mut inner = item.clone();
        inner.sig.ident = format_ident!("__aqueduct_body", span = Span::mixed_site());
        inner.attrs.clear();
        inner.vis = syn::Visibility::Inherited;
        for (i, input) in item.sig.inputs.iter_mut().enumerate() {
            let FnArg::Typed(typed) = input else { continue };
            let arg = arg_local(i);
            *typed.pat = Pat::Ident(syn::PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: arg.clone(),
                subpat: None,
            });
            args.push(arg);
        }
        let inner_name = &inner.sig.ident;
        let called = if is_async {
            quote!(#inner_name(#(#args),*).await)
        } else {
            quote!(#inner_name(#(#args),*))
        };
        body = Some(syn::parse_quote!({
            #inner
            #called
        }));
    } else {
        for input in &item.sig.inputs {
            if let FnArg::Typed(typed) = input
                && let Pat::Ident(ident) = &*typed.pat
            {
                args.push(ident.ident.clone());
            }
        }
    }
    let fake = format_ident!("__aqueduct_fake", span = Span::mixed_site());
    let call = if is_async {
        quote!(#fake(#(#args),*).await)
    } else {
        quote!(#fake(#(#args),*))
    };
    // Put before the body's own statements, in its own braces: its spans, and how
    // rustc reads it (a one-expression body is no block in a block), stay the user's.
    let check: syn::Stmt = syn::parse_quote! {
        if let ::core::option::Option::Some(#fake) = #p::fake_of::<#name, #call_type>() {
            return #call;
        }
    };
    if let Some(body) = body {
        item.block = Box::new(body);
    }
    item.block.stmts.insert(0, check);
    item
}

/// `impl name { pub fn fake(…) -> Fake }` for the task `item`, returning `ret`; `p` is
/// the private path.
pub(crate) fn fake_constructor(
    item: &ItemFn,
    ret: &Type,
    is_async: bool,
    p: &TokenStream,
) -> TokenStream {
    let (vis, name) = (&item.vis, &item.sig.ident);
    let types = input_types(item);
    let call_type = call_type(item, ret, is_async, p);
    let args: Vec<_> = (0..types.len()).map(arg_local).collect();
    let fake_doc = format!(
        "A fake of task `{name}` for a workflow's `with_fakes`: `call` takes the task's \
         inputs and returns what it returns{}. See `aqueduct::fake`.",
        if is_async {
            " (a future of it, which owns what it uses)"
        } else {
            ""
        }
    );
    // At the task's name: a fake of another signature is told the bound is the task's.
    let span = name.span();
    if !is_async {
        let bound = quote_spanned! {span=>
            ::core::ops::Fn(#(#types),*) -> #ret
                + ::core::marker::Send + ::core::marker::Sync + 'static
        };
        return quote! {
            impl #name {
                #[doc = #fake_doc]
                #[allow(dead_code)]
                #vis fn fake(call: impl #bound) -> #p::Fake {
                    let call: #p::Arc<#call_type> = #p::Arc::new(call);
                    <#name as #p::HasMarker>::MARKER.fake(call)
                }
            }
        };
    }
    let bound = quote_spanned! {span=>
        ::core::ops::Fn(#(#types),*) -> F + ::core::marker::Send + ::core::marker::Sync + 'static
    };
    let future = quote_spanned! {span=>
        ::core::future::Future<Output = #ret> + ::core::marker::Send + 'static
    };
    quote! {
        impl #name {
            #[doc = #fake_doc]
            #[allow(dead_code)]
            #vis fn fake<F>(call: impl #bound) -> #p::Fake
            where
                F: #future,
            {
                let call: #p::Arc<#call_type> = #p::Arc::new(
                    move |#(#args),*| ::std::boxed::Box::pin(call(#(#args),*))
                );
                <#name as #p::HasMarker>::MARKER.fake(call)
            }
        }
    }
}
