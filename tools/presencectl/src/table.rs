//! Plain-text tables: a header row and left-aligned columns as wide as their
//! widest cell, the last column unpadded.

/// A table being filled row by row.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            out.push_str(&line(row, &widths));
            out.push('\n');
        }
        out
    }
}

/// One row formatted to `widths`.
pub fn line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        // Cells are shown on one line whatever they hold.
        let cell: String = cell
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if i + 1 == cells.len() {
            out.push_str(&cell);
        } else {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count());
            out.push_str(&cell);
            out.push_str(&" ".repeat(pad + 2));
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&["A", "BB", "C"]);
        table.row(vec!["long-value".into(), "x".into(), "last one".into()]);
        table.row(vec!["s".into(), "yyy".into(), "z\nw".into()]);
        assert_eq!(
            table.render(),
            "A           BB   C\nlong-value  x    last one\ns           yyy  z w\n"
        );
    }
}
