//! Where a stored face crop shows the face, so that an embedder with another crop (input
//! size, template) can cut its own chip from it: `facegate reembed` after a model
//! change, and a replica receiving another device's templates.
//!
//! The record is three points: dlib's mean-face right eye, left eye and mouth centre (the
//! alignment template of src/vision/align.rs) where the crop shows them, in crop pixels.
//! Every crop template maps those three points by a similarity, so one fit takes a crop
//! cut for any template to the chip of any other; what the other chip shows beyond the
//! stored crop's edges is black.

use std::borrow::Cow;

use image::RgbImage;

use super::align::{cut, ChipLayout};
use super::warp::{warp_into, Similarity, WarpScratch};
use super::{Error, Point, ALIGNED_SIZE};

/// Where a stored crop shows dlib's mean-face right eye, left eye and mouth centre, in
/// crop pixels (pixel `i` covers `[i, i + 1)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropPoints(pub [Point; 3]);

/// The smallest and largest eye distance, in crop pixels, of a crop worth embedding.
const EYE_DISTANCE_PX: std::ops::RangeInclusive<f32> = 4.0..=4096.0;

impl CropPoints {
    /// Points read from a record or the wire: refused unless finite, the eyes between 4
    /// and 4096 px apart and the mouth off the eyes' line (a degenerate or absurd record
    /// would otherwise warp a chip out of nothing).
    pub fn checked(points: [[f32; 2]; 3]) -> Result<CropPoints, Error> {
        if points.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::StoredCrop("face points not finite".into()));
        }
        let [re, le, mouth] = points.map(|[x, y]| Point { x, y });
        let eyes = ((le.x - re.x).powi(2) + (le.y - re.y).powi(2)).sqrt();
        if !EYE_DISTANCE_PX.contains(&eyes) {
            return Err(Error::StoredCrop(format!(
                "face points put the eyes {eyes} px apart"
            )));
        }
        // Twice the triangle's area over the eye distance: the mouth's distance from
        // the eyes' line. dlib's mean face has it at 1.1 eye distances.
        let cross = (le.x - re.x) * (mouth.y - re.y) - (le.y - re.y) * (mouth.x - re.x);
        if (cross / eyes).abs() < 0.25 * eyes {
            return Err(Error::StoredCrop(
                "face points put the mouth on the eyes' line".into(),
            ));
        }
        Ok(CropPoints([re, le, mouth]))
    }

    /// Whether a crop at these points holds `chip`'s layout at the same scale and angle,
    /// shifted by whole pixels (a crop with a margin, cut for the same template).
    pub fn same_layout(&self, chip: &CropPoints) -> bool {
        Similarity::fit(&self.0, &chip.0)
            .as_ref()
            .and_then(whole_pixel_shift)
            .is_some()
    }

    pub fn pixels(&self) -> [[f32; 2]; 3] {
        self.0.map(|p| [p.x, p.y])
    }

    /// The points of `layout`'s chips, `None` for a degenerate template (ruled out when
    /// the embedder's description is read).
    pub(super) fn of_layout(layout: &ChipLayout) -> Option<CropPoints> {
        layout.face_points().map(CropPoints)
    }

    /// A crop stored without points: before they were recorded, every stored crop was
    /// the chip of the embedder that enrolled it, and every embedder facegate shipped
    /// cut dlib's 150x150 chip. So a 150x150 crop is read as that; another size has no
    /// known layout. (An operator's own embedder with another 150x150 template is the
    /// one case this reads wrongly; docs/own-model.md says so.)
    fn unrecorded(dimensions: (u32, u32)) -> Option<CropPoints> {
        (dimensions == (ALIGNED_SIZE, ALIGNED_SIZE))
            .then(|| CropPoints::of_layout(&ChipLayout::default()))
            .flatten()
    }
}

/// How far beyond dlib's mean-face unit square every stored crop reaches, in units of
/// that square: what the templates an operator may switch to need. The shipped chip
/// (padding 0.25) ends 0.25 beyond it; ArcFace's 112 template reaches 0.54 above it,
/// the FaceNet example's keypoint square 0.54 above and 0.45 beside it.
const REACH: f32 = 0.6;

/// Longest side of a stored crop: the margin is left out beyond it. An embedder with a
/// chip of several hundred pixels already shows the face in more detail than needed,
/// and a user's templates must stay well inside one sync message (1 MiB).
const MAX_SIDE: f32 = 512.0;

/// The crop kept with a template: the embedder's chip with a margin on each side (the
/// same pixels where the chip is; what the chip cut off around it), and where it shows
/// the face.
#[derive(Clone, Debug)]
pub struct StoredCrop {
    pub image: RgbImage,
    pub points: CropPoints,
}

/// The crop to store for a face cut from `image` by `to_chip` into `layout`'s chip
/// `chip`: the chip extended by whole pixels on each side until it covers [`REACH`]
/// beyond the mean face's square. The chip's own pixels are copied in, so re-embedding
/// with the same model cuts exactly the chip back out (a whole-pixel shift); the margin
/// is cut from `image` with the same transform. `None` for a degenerate layout.
pub(super) fn stored_crop(
    image: &RgbImage,
    chip: &RgbImage,
    to_chip: &Similarity,
    layout: &ChipLayout,
    scratch: &mut WarpScratch,
) -> Option<StoredCrop> {
    let frame = layout.face_frame()?;
    let reach = [
        (-REACH, -REACH),
        (1.0 + REACH, -REACH),
        (-REACH, 1.0 + REACH),
        (1.0 + REACH, 1.0 + REACH),
    ]
    .map(|(x, y)| frame.apply(Point { x, y }));
    let (w, h) = (layout.width as f32, layout.height as f32);
    let fold =
        |init: f32, f: fn(f32, f32) -> f32, c: fn(&Point) -> f32| reach.iter().map(c).fold(init, f);
    let (left, top) = (fold(0.0, f32::min, |p| p.x), fold(0.0, f32::min, |p| p.y));
    let (right, bottom) = (fold(w, f32::max, |p| p.x), fold(h, f32::max, |p| p.y));
    let (ml, mt) = ((-left).ceil(), (-top).ceil());
    let (cw, ch) = (right.ceil() + ml, bottom.ceil() + mt);
    let (ml, mt, cw, ch) = if cw.max(ch) <= MAX_SIDE {
        (ml, mt, cw, ch)
    } else {
        (0.0, 0.0, w, h)
    };
    let to_crop = Similarity {
        tx: to_chip.tx + ml,
        ty: to_chip.ty + mt,
        ..*to_chip
    };
    let (cw, ch) = (cw as usize, ch as usize);
    let mut pixels = vec![0u8; cw * ch * 3];
    warp_into(image, &to_crop.inverse()?, cw, ch, scratch, &mut pixels);
    // The chip's rows over their place (margins are whole pixels, the chip inside).
    let row = chip.width() as usize * 3;
    for (y, chip_row) in chip.as_raw().chunks_exact(row).enumerate() {
        let at = ((y + mt as usize) * cw + ml as usize) * 3;
        pixels.get_mut(at..at + row)?.copy_from_slice(chip_row);
    }
    let crop = RgbImage::from_raw(cw as u32, ch as u32, pixels)?;
    let points = CropPoints::of_layout(layout)?.0.map(|p| Point {
        x: p.x + ml,
        y: p.y + mt,
    });
    Some(StoredCrop {
        image: crop,
        points: CropPoints(points),
    })
}

/// How a stored crop becomes `layout`'s chip.
pub(super) enum Recut {
    /// The crop is that chip already.
    AsStored,
    /// The chip is the crop's pixels from this corner on (a crop this layout stored).
    Within { left: u32, top: u32 },
    /// Cut with this transform from crop to chip coordinates.
    Warp(Similarity),
}

/// How `crop`, showing the face at `recorded` (or as [`CropPoints::unrecorded`] reads it),
/// becomes the chip of `layout`, whose face points are `ours`: how, the transform from
/// crop to chip, and the crop's points.
pub(super) fn recut(
    crop: &RgbImage,
    recorded: Option<&CropPoints>,
    layout: &ChipLayout,
    ours: &CropPoints,
) -> Result<(Recut, Similarity, CropPoints), Error> {
    let found = crop.dimensions();
    let expected = (layout.width, layout.height);
    let theirs = match recorded {
        Some(p) => *p,
        None => CropPoints::unrecorded(found).ok_or(Error::StoredChipLayout { found, expected })?,
    };
    // A face whose eyes or mouth lie off the crop would embed black: not a template.
    let (w, h) = (found.0 as f32, found.1 as f32);
    if theirs
        .0
        .iter()
        .any(|p| !(0.0..=w).contains(&p.x) || !(0.0..=h).contains(&p.y))
    {
        return Err(Error::StoredCrop(format!(
            "face points {:?} lie outside the {}x{} crop",
            theirs.pixels(),
            found.0,
            found.1
        )));
    }
    let to_chip = Similarity::fit(&theirs.0, &ours.0)
        .ok_or_else(|| Error::StoredCrop("face points coincide".into()))?;
    let how = match whole_pixel_shift(&to_chip) {
        Some((0, 0)) if found == expected => Recut::AsStored,
        Some((dx, dy))
            if dx <= 0
                && dy <= 0
                && i64::from(expected.0) - dx <= i64::from(found.0)
                && i64::from(expected.1) - dy <= i64::from(found.1) =>
        {
            Recut::Within {
                left: (-dx) as u32,
                top: (-dy) as u32,
            }
        }
        _ => Recut::Warp(to_chip),
    };
    Ok((how, to_chip, theirs))
}

/// `(dx, dy)` when `t` moves by whole pixels and does nothing else, within a
/// millipixel over the chip: what f32 arithmetic and text round trips leave of the
/// same points, far below what would change one chip pixel. Resampling such a shift
/// would round some pixels differently (the int8 embedder turns that into a cosine
/// of 0.9998); copying them gives the chip exactly.
fn whole_pixel_shift(t: &Similarity) -> Option<(i64, i64)> {
    let whole = |v: f32| ((v - v.round()).abs() < 1e-3).then_some(v.round() as i64);
    if (t.a - 1.0).abs() < 1e-5 && t.b.abs() < 1e-5 {
        Some((whole(t.tx)?, whole(t.ty)?))
    } else {
        None
    }
}

/// The chip [`recut`] describes.
pub(super) fn chip_from<'a>(
    crop: &'a RgbImage,
    how: &Recut,
    layout: &ChipLayout,
) -> Option<Cow<'a, RgbImage>> {
    match how {
        Recut::AsStored => Some(Cow::Borrowed(crop)),
        Recut::Within { left, top } => Some(Cow::Owned(
            image::imageops::crop_imm(crop, *left, *top, layout.width, layout.height).to_image(),
        )),
        Recut::Warp(to_chip) => cut(crop, to_chip, layout).map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::CropTemplate;

    fn arcface() -> ChipLayout {
        ChipLayout {
            width: 112,
            height: 112,
            template: CropTemplate::Arcface112,
        }
    }

    #[test]
    fn a_crop_in_the_embedders_own_layout_is_used_as_stored() {
        let layout = ChipLayout::default();
        let ours = CropPoints::of_layout(&layout).unwrap();
        let crop = RgbImage::new(150, 150);
        let (how, _, _) = recut(&crop, Some(&ours), &layout, &ours).unwrap();
        assert!(matches!(how, Recut::AsStored));
        // Unrecorded 150x150 crops are dlib chips.
        let (how, _, _) = recut(&crop, None, &layout, &ours).unwrap();
        assert!(matches!(how, Recut::AsStored));
    }

    #[test]
    fn a_crop_with_a_margin_gives_back_its_chip_by_copying_pixels() {
        let layout = ChipLayout::default();
        let ours = CropPoints::of_layout(&layout).unwrap();
        let moved = |d: f32| {
            CropPoints(ours.0.map(|p| Point {
                x: p.x + d,
                y: p.y + d,
            }))
        };
        let crop = RgbImage::new(220, 220);
        let (how, _, _) = recut(&crop, Some(&moved(35.0)), &layout, &ours).unwrap();
        assert!(matches!(how, Recut::Within { left: 35, top: 35 }));
        // A chip that would reach past the crop's edge is warped (black there), and
        // so is a shift by a fraction of a pixel.
        for d in [80.0, 35.5] {
            let (how, _, _) = recut(&crop, Some(&moved(d)), &layout, &ours).unwrap();
            assert!(matches!(how, Recut::Warp(_)), "{d}");
        }
    }

    #[test]
    fn a_dlib_crop_is_recut_onto_arcfaces_template() {
        let dlib = CropPoints::of_layout(&ChipLayout::default()).unwrap();
        let theirs = CropPoints::of_layout(&arcface()).unwrap();
        let crop = RgbImage::new(150, 150);
        let (how, to_chip, _) = recut(&crop, Some(&dlib), &arcface(), &theirs).unwrap();
        assert!(matches!(how, Recut::Warp(_)));
        for (d, a) in dlib.0.iter().zip(theirs.0) {
            let p = to_chip.apply(*d);
            assert!((p.x - a.x).abs() < 1e-3 && (p.y - a.y).abs() < 1e-3);
        }
        // ArcFace's eyes are 35 px apart on 112 px, dlib's 52.5 on 150: smaller.
        assert!(
            to_chip.scale() < 0.75 && to_chip.scale() > 0.6,
            "{to_chip:?}"
        );
    }

    #[test]
    fn an_unrecorded_crop_of_another_size_is_refused_with_both_sizes() {
        let layout = arcface();
        let ours = CropPoints::of_layout(&layout).unwrap();
        let err = recut(&RgbImage::new(112, 96), None, &layout, &ours)
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                Error::StoredChipLayout {
                    found: (112, 96),
                    expected: (112, 112)
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn face_points_off_the_crop_are_refused() {
        let layout = ChipLayout::default();
        let ours = CropPoints::of_layout(&layout).unwrap();
        let off = CropPoints(ours.0.map(|p| Point {
            x: p.x + 5000.0,
            y: p.y,
        }));
        let crop = RgbImage::new(220, 220);
        let err = recut(&crop, Some(&off), &layout, &ours).err().unwrap();
        assert!(
            err.to_string().contains("outside the 220x220 crop"),
            "{err}"
        );
    }

    #[test]
    fn absurd_face_points_are_refused() {
        let ok = [[52.0, 60.0], [98.0, 60.0], [75.0, 110.0]];
        assert!(CropPoints::checked(ok).is_ok());
        for bad in [
            [[52.0, 60.0], [f32::NAN, 60.0], [75.0, 110.0]],
            [[52.0, 60.0], [53.0, 60.0], [75.0, 110.0]],
            [[0.0, 0.0], [1e6, 0.0], [75.0, 110.0]],
            [[52.0, 60.0], [98.0, 60.0], [75.0, 61.0]],
        ] {
            assert!(CropPoints::checked(bad).is_err(), "{bad:?}");
        }
    }
}
