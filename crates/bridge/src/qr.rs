//! QR codes for the `X-HM://` setup URI: in the terminal, drawn with Unicode half blocks (two
//! module rows per text line) so it fits a normal terminal; and as SVG for the status page.

use qrcode::{Color, QrCode};

/// Modules of light border around the code (the QR spec asks for 4; 2 scans fine on screens).
const QUIET_ZONE: usize = 2;

/// Renders `data` as lines of text; dark modules are drawn, light ones are spaces (for a
/// light-on-dark terminal the code is inverted, which phone scanners also accept).
pub fn render(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET_ZONE;
    let dark = |x: usize, y: usize| -> bool {
        if x < QUIET_ZONE || y < QUIET_ZONE || x >= width + QUIET_ZONE || y >= width + QUIET_ZONE {
            return false;
        }
        colors.get((y - QUIET_ZONE) * width + (x - QUIET_ZONE)) == Some(&Color::Dark)
    };
    let mut out = String::new();
    for y in (0..size).step_by(2) {
        for x in 0..size {
            out.push(match (dark(x, y), dark(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Some(out)
}

/// `data` as a standalone SVG QR code (4-module quiet zone, at least 200 px), for the status
/// page.
pub fn svg(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn renders_square_block_of_half_height() {
        let text = render("X-HM://0026E4Y3T7OSX").unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let code = QrCode::new(b"X-HM://0026E4Y3T7OSX").unwrap();
        let size = code.width() + 2 * QUIET_ZONE;
        assert_eq!(lines.len(), size.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == size));
        // The finder pattern's top edge is a dark run of 7 modules after the quiet zone.
        let row1: Vec<char> = lines[1].chars().collect();
        assert!(row1[QUIET_ZONE..QUIET_ZONE + 7].iter().all(|c| *c != ' '));
    }
}
