//! `#[task]`: parse → validate → expand.
//!
//! The function is emitted unchanged. Beside it goes a hidden struct of the same name
//! (type namespace only), implementing `__private::Task` with the task's return
//! type, output type and kind; `workflow!` names the task through it.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

use crate::errors::Errors;
use crate::options::Options;
use crate::spans::respan;

/// A validated task.
struct Task {
    item: ItemFn,
    is_async: bool,
    /// The declared return type; `()` when there is none.
    ret: Type,
    /// Whether `ret` is a `Result` whose `Err` fails the task.
    fallible: bool,
    /// Per parameter, how the task takes it.
    inputs: Vec<Input>,
    options: Options,
}

/// How a task takes one input.
enum Input {
    /// `&T`: shared; the task runs only if it succeeded.
    Borrowed,
    /// `&Outcome<T>`: shared, whatever became of it.
    Tolerant,
    /// `T`: moved into the task, which is its one reader.
    Owned(Box<Type>),
}

/// Inputs per task: the builder's tuples go up to twelve.
const MAX_INPUTS: usize = 12;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => return not_a_function(item),
    };
    match validate(args, item.clone()) {
        Ok(task) => emit(&task),
        // Keep the function so the rest of the crate (and rust-analyzer) still sees it.
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#item #error)
        }
    }
}

fn not_a_function(item: TokenStream) -> TokenStream {
    let span = item
        .clone()
        .into_iter()
        .find(|t| !matches!(t, proc_macro2::TokenTree::Punct(p) if p.as_char() == '#'))
        .map_or_else(Span::call_site, |t| t.span());
    let error = syn::Error::new(
        span,
        "`#[task]` goes on a function: `fn name(input: &T) -> Output` or `async fn …`",
    )
    .to_compile_error();
    quote!(#item #error)
}

fn validate(args: TokenStream, item: ItemFn) -> syn::Result<Task> {
    let mut errors = Errors::default();
    let options = Options::parse(args, &mut errors);
    let sig = &item.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.at(
            &sig.generics,
            "a task cannot be generic: a workflow node needs one concrete signature",
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(
            unsafety,
            "a task cannot be `unsafe fn`: the runtime calls it for you",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi, "a task cannot declare an ABI: remove `extern`");
    }
    let mut inputs = Vec::new();
    let mut first_owned = None;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.at(
                receiver,
                "a task is a free function, not a method: move it out of the `impl`",
            ),
            FnArg::Typed(typed) => {
                let input = input_kind(&typed.ty, &mut errors);
                if let Input::Owned(ty) = &input {
                    first_owned.get_or_insert_with(|| {
                        (typed.pat.to_token_stream().to_string(), type_text(ty))
                    });
                }
                inputs.push(input);
            }
        }
    }
    if let Some(options) = &options {
        let clones = options.retry_clones();
        match (&first_owned, options.retries_at(), clones) {
            (Some((name, ty)), Some(at), None | Some((false, _))) => errors.push(syn::Error::new(
                at,
                format!(
                    "`retries` runs this task again, but its input `{name}: {ty}` is moved into \
                     the first attempt: take `&{ty}`, or add `retry_clones = true` to give every \
                     attempt but the last a clone"
                ),
            )),
            (None, _, Some((true, at))) => errors.push(syn::Error::new(
                at,
                "`retry_clones` clones the inputs a task takes by value for its retries, but \
                 this task takes none by value: remove it",
            )),
            (Some(_), None, Some((true, at))) => errors.push(syn::Error::new(
                at,
                "`retry_clones` clones by-value inputs for retries, but this task is not \
                 retried: add `retries = N`, or remove it",
            )),
            _ => {}
        }
    }
    if let (Some(at), Some(tolerant)) = (
        options.as_ref().and_then(Options::cache_at),
        sig.inputs
            .iter()
            .zip(&inputs)
            .find(|(_, input)| matches!(input, Input::Tolerant)),
    ) {
        errors.push(syn::Error::new(
            at,
            format!(
                "a cached task's result is keyed by its inputs' values, but `{}` is read \
                 whatever became of it (a cleanup task): remove `cache`, or take `&T`",
                match tolerant.0 {
                    FnArg::Typed(typed) => typed.pat.to_token_stream().to_string(),
                    FnArg::Receiver(_) => "self".to_owned(),
                }
            ),
        ));
    }
    if let Some(extra) = sig.inputs.iter().nth(MAX_INPUTS) {
        errors.at(
            extra,
            format!("a task takes at most {MAX_INPUTS} inputs: group some into a struct"),
        );
    }
    let ret = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    if let Type::ImplTrait(_) = &ret {
        errors.at(
            &ret,
            "a task cannot return `impl Trait`: its output is stored and shared, so name its type",
        );
    }
    errors.finish()?;
    Ok(Task {
        is_async: sig.asyncness.is_some(),
        fallible: is_result(&ret),
        ret,
        item,
        inputs,
        options: options.expect("options are valid when there are no errors"),
    })
}

/// `&Outcome<T>`: a parameter that receives what became of its input.
fn is_outcome(ty: &Type) -> bool {
    matches!(ty, Type::Reference(reference) if named(&reference.elem, "Outcome"))
}

/// A type path (possibly in parentheses) whose last segment is `name`: `Result`,
/// `io::Result<T>`, `aqueduct::Outcome<T>`.
fn named(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_none() && path.path.segments.last().is_some_and(|s| s.ident == name)
        }
        Type::Paren(inner) => named(&inner.elem, name),
        _ => false,
    }
}

/// How a parameter of type `ty` is taken: `&T`, `&Outcome<T>` or `T`.
fn input_kind(ty: &Type, errors: &mut Errors) -> Input {
    match ty {
        Type::Reference(reference) => {
            if let Some(mutability) = &reference.mutability {
                errors.at(
                    mutability,
                    "a task cannot take `&mut`: an input is shared with its other readers \
                     (take `&T`) or moved into this task alone (take `T`)",
                );
            }
            if is_outcome(ty) {
                Input::Tolerant
            } else {
                Input::Borrowed
            }
        }
        Type::Paren(inner) => input_kind(&inner.elem, errors),
        _ if named(ty, "Outcome") => {
            errors.at(
                ty,
                format!(
                    "what became of an input is read, not taken: take `&{}`",
                    type_text(ty)
                ),
            );
            Input::Borrowed
        }
        _ => Input::Owned(Box::new(ty.clone())),
    }
}

/// `T` in `Result<T, …>`.
fn ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let syn::PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(ok) => Some(ok),
        _ => None,
    }
}

/// A type as a user would write it: `Vec<u64>`, not `Vec < u64 >`.
fn type_text(ty: &Type) -> String {
    let text = quote!(#ty).to_string();
    [
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        (" :: ", "::"),
        ("& ", "&"),
    ]
    .iter()
    .fold(text, |text, (from, to)| text.replace(from, to))
}

/// A return type spelled `Result<…>` (any path ending in `Result`) fails the task on `Err`.
fn is_result(ty: &Type) -> bool {
    named(ty, "Result")
}

fn emit(task: &Task) -> TokenStream {
    let item = &task.item;
    let vis = &item.vis;
    let name = &item.sig.ident;
    let ret = &task.ret;
    let p = task.options.crate_path().private();
    let (output, finish) = if task.fallible {
        // `Result<T, …>` names its output `T`; only an alias without arguments needs the
        // projection, which rustc reports once per use if the type is not a `Result`.
        let output = ok_type(ret).map_or_else(
            || quote_spanned!(ret.span()=> <#ret as #p::TaskReturn>::Output),
            |ok| quote!(#ok),
        );
        // The error's conversion is picked by method resolution (see
        // `__private::IntoKind`); a type that cannot convert is reported at the
        // return type.
        let finish = quote_spanned! {ret.span()=>
            match #p::split(ret) {
                ::core::result::Result::Ok(value) => ::core::result::Result::Ok(value),
                ::core::result::Result::Err(error) => ::core::result::Result::Err({
                    #[allow(unused_imports)]
                    use #p::{BoxKind as _, IntoKind as _};
                    (&error).task_error_kind().convert(error)
                }),
            }
        };
        (output, finish)
    } else {
        (
            quote_spanned!(ret.span()=> #ret),
            quote!(::core::result::Result::Ok(ret)),
        )
    };
    let (kind, kind_value) = if task.is_async {
        (quote!(#p::Io), quote!(#p::Kind::Io))
    } else {
        (quote!(#p::Cpu), quote!(#p::Kind::Cpu))
    };
    let send_check = task.is_async.then(|| send_check(task));
    // A task that can be faked has `name::fake`, and its body looks for one first.
    let (item, fake) = if crate::task_call::fakeable(item) {
        (
            crate::task_call::with_fake_check(item, ret, task.is_async, &p),
            crate::task_call::fake_constructor(item, ret, task.is_async, &p),
        )
    } else {
        (item.clone(), TokenStream::new())
    };
    let (cache, cache_checks) = cache(task, &output);
    let policy = task.options.policy();
    let timeout = task.options.timeout();
    let concurrency = task.options.concurrency();
    let code = code_hash(&task.item);
    let cache_policy = task.options.cache(code);
    let mask: u16 = task
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, input)| matches!(input, Input::Tolerant))
        .map(|(i, _)| 1u16 << i)
        .sum();
    let clones = matches!(task.options.retry_clones(), Some((true, _)));
    let inputs = (0..MAX_INPUTS).map(|i| match task.inputs.get(i) {
        Some(Input::Tolerant) => quote!(#p::Tolerant),
        Some(Input::Owned(_)) if clones => quote!(#p::Cloned),
        Some(Input::Owned(_)) => quote!(#p::Owned),
        _ => quote!(#p::Required),
    });
    // Every attempt but the last of a `retry_clones` task gets a clone: each type taken
    // by value must be `Clone`, checked here at its token.
    let owned = task.inputs.iter().filter_map(|input| match input {
        Input::Owned(ty) => Some(ty),
        _ => None,
    });
    let clone_checks = owned
        .filter(|_| clones)
        .map(|ty| quote_spanned!(ty.span()=> const _: () = #p::assert_retry_clone::<#ty>();));
    quote! {
        #item

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {}

        impl #p::Task for #name {
            type Return = #ret;
            type Output = #output;
            type Kind = #kind;
            type Inputs = (#(#inputs,)*);
            type Cache = #cache;
            const INFO: #p::TaskInfo = #p::TaskInfo {
                name: ::core::stringify!(#name),
                kind: #kind_value,
                retry: #policy,
                timeout: #timeout,
                outcome_inputs: #mask,
                concurrency: #concurrency,
                cache: #cache_policy,
                code: #code,
            };
            fn finish(ret: Self::Return) -> ::core::result::Result<Self::Output, #p::TaskError> {
                #finish
            }
        }

        #fake

        const _: () = #p::assert_task_output::<#output>();
        #(#clone_checks)*
        #cache_checks

        #send_check
    }
}

/// FNV-1a (64 bits) of the function's signature and body as tokens: what a cached
/// task's key says about its code. Its attributes (doc comments) and visibility are
/// left out: changing them changes no result.
fn code_hash(item: &ItemFn) -> u64 {
    let (sig, block) = (&item.sig, &item.block);
    quote!(#sig #block)
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// `Cached` or `NoCache`, and for a cached task the checks, spanned at `cache`, that
/// its inputs can be hashed and its output saved and loaded.
fn cache(task: &Task, output: &TokenStream) -> (TokenStream, TokenStream) {
    let p = task.options.crate_path().private();
    let Some(at) = task.options.cache_at() else {
        return (quote!(#p::NoCache), TokenStream::new());
    };
    let p = task.options.crate_path().private_at(at);
    let inputs = task.item.sig.inputs.iter().filter_map(|input| match input {
        FnArg::Typed(typed) => Some(match &*typed.ty {
            Type::Reference(reference) => &*reference.elem,
            ty => ty,
        }),
        FnArg::Receiver(_) => None,
    });
    // The types are spanned at `cache` too, so each error's caret is under the option
    // and its message names the type.
    let checks = inputs
        .map(|ty| {
            let ty = respan(ty.to_token_stream(), at);
            quote_spanned!(at=> const _: () = #p::assert_cache_input::<#ty>();)
        })
        .chain(std::iter::once({
            let output = respan(output.clone(), at);
            quote_spanned!(at=> const _: () = #p::assert_cache_output::<#output>();)
        }));
    (quote!(#p::Cached), checks.collect())
}

/// A never-called function that hands the task's future to `assert_send`, so a
/// non-`Send` future is reported at the task, with rustc's note on what is held across
/// which `.await`.
fn send_check(task: &Task) -> TokenStream {
    let name = &task.item.sig.ident;
    let assert_send = task.options.crate_path().private_at(name.span());
    let types = crate::task_call::input_types(&task.item);
    let args: Vec<_> = (0..types.len()).map(crate::task_call::arg_local).collect();
    quote_spanned! {name.span()=>
        const _: () = {
            #[allow(dead_code)]
            fn __aqueduct_future_is_send(#(#args: #types),*) {
                #assert_send::assert_send(#name(#(#args),*));
            }
        };
    }
}
