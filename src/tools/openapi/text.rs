//! Text from the document made fit for what is generated: rule names and TOML comments. Used by
//! the mapping (names, summaries) and the renderer alike, so it sits below both.

/// `text` cut to at most `max` bytes on a character boundary, marked with `...` when cut.
pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `text` on one line, fit for a comment: white space runs become one space; control and
/// bidirectional-override characters are dropped (they could hide what the line says); long
/// text is cut.
pub(super) fn comment_text(text: &str) -> String {
    let visible: String = text
        .chars()
        .filter(|c| !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    shorten(
        &visible.split_whitespace().collect::<Vec<_>>().join(" "),
        160,
    )
}
