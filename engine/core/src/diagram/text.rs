//! Text in a drawing without a font at hand: escaping, an estimate of widths
//! (wide characters one em, narrow ones 0.6 em) and line wrapping on that estimate.

/// `text` safe inside XML text and double- or single-quoted attributes.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0; a label never needs them.
            c if (c as u32) < 0x20 => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Estimated width of `c` in ems.
fn char_em(c: char) -> f64 {
    if c.is_ascii() {
        0.6
    } else if ('\u{ff61}'..='\u{ff9f}').contains(&c) {
        // Half-width katakana.
        0.6
    } else {
        1.0
    }
}

/// Estimated width of `text` in pixels at font size `size`.
pub fn width(text: &str, size: f64) -> f64 {
    text.chars().map(char_em).sum::<f64>() * size
}

/// `text` on lines at most `max` pixels wide (estimated), at most `lines` lines;
/// the last line ends in `…` when text was left out. ASCII words stay whole when
/// they fit; wide characters break anywhere (as Japanese does).
pub fn wrap(text: &str, size: f64, max: f64, lines: usize) -> Vec<String> {
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // Tokens: an ASCII word with its following space, or one other character.
    let mut tokens: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_ascii() && c != ' ' {
            word.push(c);
        } else {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            tokens.push(c.to_string());
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    let mut out: Vec<String> = vec![String::new()];
    for tok in tokens {
        let line = out.last_mut().expect("one line at least");
        if width(&format!("{line}{tok}"), size) <= max {
            line.push_str(&tok);
            continue;
        }
        if tok == " " {
            out.push(String::new());
            continue;
        }
        // Does not fit: a new line, splitting a word longer than a line.
        if !line.trim().is_empty() {
            out.push(String::new());
        }
        for c in tok.chars() {
            let line = out.last_mut().expect("one line at least");
            if !line.is_empty() && width(&format!("{line}{c}"), size) > max {
                out.push(String::new());
            }
            out.last_mut().expect("one line at least").push(c);
        }
    }
    let mut out: Vec<String> = out.into_iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if out.len() > lines {
        out.truncate(lines);
        let last = out.last_mut().expect("lines > 0");
        while !last.is_empty() && width(&format!("{last}…"), size) > max {
            last.pop();
        }
        last.push('…');
    }
    out
}

/// `text` cut to at most `max` pixels (estimated), ending in `…` when cut.
pub fn clip(text: &str, size: f64, max: f64) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if width(&text, size) <= max {
        return text;
    }
    let mut out = String::new();
    for c in text.chars() {
        if width(&format!("{out}{c}…"), size) > max {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(xml(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn wraps_japanese_anywhere_and_english_at_spaces() {
        let lines = wrap("部長の承認（5万円以上）", 12.0, 72.0, 3);
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(lines.iter().all(|l| width(l, 12.0) <= 72.0), "{lines:?}");
        assert_eq!(lines.concat(), "部長の承認（5万円以上）");
        assert_eq!(wrap("Check the receipt", 12.0, 60.0, 3), ["Check", "the", "receipt"]);
    }

    #[test]
    fn cuts_with_an_ellipsis() {
        let lines = wrap(&"あ".repeat(100), 12.0, 60.0, 2);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with('…'));
        // `…` is wide: 3 × 6 + 10 px.
        assert_eq!(clip("abcdefghijklmnop", 10.0, 30.0), "abc…");
    }
}
