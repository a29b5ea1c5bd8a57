//! HTML escaped by construction: markup comes only from string literals (the
//! format strings of `html!`); every argument is escaped unless it is already
//! [`Markup`] built the same way.

use std::fmt::{self, Write};

/// A piece of HTML built by `html!` (or a literal): safe to insert unescaped.
#[derive(Debug, Default, Clone)]
pub struct Markup(String);

impl Markup {
    pub fn new() -> Self {
        Markup(String::new())
    }

    /// Static markup: only literals, never user data.
    pub fn raw(s: &'static str) -> Self {
        Markup(s.to_string())
    }

    /// A process diagram from `nagare_engine::diagram::svg`: the renderer escapes
    /// every label and attribute it writes (its tests check the XML is well formed
    /// with `<`, `&`, quotes in names), so its output is markup like a literal's.
    pub fn diagram_svg(svg: String) -> Self {
        Markup(svg)
    }

    pub fn push(&mut self, m: Markup) {
        self.0.push_str(&m.0);
    }

    /// Append with a literal format string; every argument escaped ([`Html`]).
    pub fn write(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.0.write_fmt(args);
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a value goes into HTML: text is escaped, [`Markup`] is not.
pub trait Html {
    fn write_html(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// Escape `&`, `<`, `>`, `"` and `'`: safe in text and in quoted attributes.
pub fn escape_into(s: &str, out: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.write_str(&s[last..i])?;
        out.write_str(rep)?;
        last = i + 1;
    }
    out.write_str(&s[last..])
}

impl Html for str {
    fn write_html(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape_into(self, out)
    }
}

impl Html for String {
    fn write_html(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape_into(self, out)
    }
}

impl Html for Markup {
    fn write_html(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        out.write_str(&self.0)
    }
}

impl<T: Html + ?Sized> Html for &T {
    fn write_html(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).write_html(out)
    }
}

macro_rules! plain_html {
    ($($t:ty),*) => {$(
        impl Html for $t {
            fn write_html(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(out, "{}", self)
            }
        }
    )*};
}
plain_html!(u8, u32, u64, usize, i64, f64, bool);

/// Adapter: [`Html`] as `Display`, for the format machinery.
pub struct Esc<'a, T: Html + ?Sized>(pub &'a T);

impl<T: Html + ?Sized> fmt::Display for Esc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_html(f)
    }
}

/// `html!(out, "<p>{}</p>", value)` appends to a [`Markup`]; `html!("…", …)` makes
/// one. The format string must be a literal, and each argument is escaped.
macro_rules! html {
    // The literal-first arm goes first: `html!("<b>{}</b>", "x")` must not read
    // its format string as a buffer.
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        let mut m = $crate::web::html::Markup::new();
        m.write(format_args!($fmt $(, $crate::web::html::Esc(&$arg))*));
        m
    }};
    ($out:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {
        $out.write(format_args!($fmt $(, $crate::web::html::Esc(&$arg))*))
    };
}
pub(crate) use html;

/// Percent-encode a path segment or query value (ids may be Japanese).
pub fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_escaped_and_markup_is_not() {
        let inner = html!("<b>{}</b>", "a&b");
        let page = html!("<p title=\"{}\">{}{}</p>", "\"x'", "<script>", inner);
        assert_eq!(page.as_str(), "<p title=\"&quot;x&#39;\">&lt;script&gt;<b>a&amp;b</b></p>");
        assert_eq!(url_part("申請 1/2"), "%E7%94%B3%E8%AB%8B%201%2F2");
    }
}
