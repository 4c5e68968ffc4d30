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
use super::warp::Similarity;
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

/// How a stored crop becomes `layout`'s chip.
pub(super) enum Recut {
    /// The crop is that chip already.
    AsStored,
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
    let to_chip = Similarity::fit(&theirs.0, &ours.0)
        .ok_or_else(|| Error::StoredCrop("face points coincide".into()))?;
    // A third of a millipixel over the chip: what f32 text round trips leave of the same
    // points, far below what would change one chip pixel.
    let identity = (to_chip.a - 1.0).abs() < 1e-5
        && to_chip.b.abs() < 1e-5
        && to_chip.tx.abs() < 1e-3
        && to_chip.ty.abs() < 1e-3;
    let how = if identity && found == expected {
        Recut::AsStored
    } else {
        Recut::Warp(to_chip)
    };
    Ok((how, to_chip, theirs))
}

/// The chip [`recut`] describes.
pub(super) fn chip_from<'a>(
    crop: &'a RgbImage,
    how: &Recut,
    layout: &ChipLayout,
) -> Option<Cow<'a, RgbImage>> {
    match how {
        Recut::AsStored => Some(Cow::Borrowed(crop)),
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
