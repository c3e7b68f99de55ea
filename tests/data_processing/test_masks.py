import numpy as np

from data_processing import face_regions as fr
from data_processing.masks import BackgroundAccumulator, frame_masks, headless_image, semantic_map
from data_processing.semantic_classes import CLASS_ID, SEMANTIC_CLASSES

H = W = 200


def _ring(indices, centre, rx, ry, lm):
    for k, i in enumerate(indices):
        a = 2 * np.pi * k / len(indices) - np.pi / 2
        lm[i, :2] = [centre[0] + rx * np.cos(a), centre[1] + ry * np.sin(a)]


def synthetic_face():
    """Landmarks drawing a face: oval, eyes, brows, lips, nose, at known places (pixels)."""
    lm = np.zeros((478, 3), np.float32)
    lm[:, :2] = [100, 90]  # everything else at the face centre
    _ring(fr.FACE_OVAL, (100, 90), 40, 55, lm)  # forehead (index 10) at the top, chin at the bottom
    lm[fr.CHIN, :2] = [100, 145]
    lm[fr.LEFT_CHEEK, :2] = [140, 90]
    lm[fr.RIGHT_CHEEK, :2] = [60, 90]
    _ring(fr.RIGHT_EYE, (83, 78), 8, 3, lm)
    _ring(fr.LEFT_EYE, (117, 78), 8, 3, lm)
    _ring(fr.RIGHT_EYEBROW, (83, 66), 10, 2, lm)
    _ring(fr.LEFT_EYEBROW, (117, 66), 10, 2, lm)
    _ring(fr.LIPS_OUTER, (100, 120), 14, 6, lm)
    _ring(fr.LIPS_INNER, (100, 120), 10, 2, lm)
    _ring(fr.nose_points(), (100, 98), 5, 10, lm)
    lm[fr.NOSE_BOTTOM, :2] = [100, 108]
    return lm


def person_mask():
    yy, xx = np.mgrid[:H, :W]
    head = ((xx - 100) / 48) ** 2 + ((yy - 85) / 65) ** 2 <= 1
    neck = (np.abs(xx - 100) < 22) & (yy > 130) & (yy < 170)
    torso = yy >= 165
    return head | neck | torso


def skin_image():
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (220, 170, 140)  # skin everywhere the person is
    img[175:] = (30, 40, 90)  # a dark jacket
    return img


def test_masks_geometry():
    lm, person = synthetic_face(), person_mask()
    m = frame_masks(lm, person, skin_image())
    # Face: the filled oval (area of an ellipse 40 x 55 px semi-axes).
    assert abs(m.face.sum() - np.pi * 40 * 55) / (np.pi * 40 * 55) < 0.05
    # Mouth: lips, dilated, inside the lower face, around (100, 120).
    ys, xs = np.nonzero(m.mouth)
    assert abs(xs.mean() - 100) < 2 and abs(ys.mean() - 120) < 2
    assert m.mouth.sum() > np.pi * 14 * 6
    assert (m.mouth & m.face).sum() / m.mouth.sum() > 0.9
    assert m.eyes[78, 83] and m.eyes[78, 117] and not m.eyes[100, 100]
    # Head, neck and torso split the person without overlap.
    assert not (m.head & m.neck).any() and not (m.head & m.torso).any() and not (m.neck & m.torso).any()
    np.testing.assert_array_equal(m.head | m.neck | m.torso, person | m.face)
    assert m.neck[160, 100] and not m.neck[190, 100]  # skin below the chin; the jacket is torso
    assert m.torso[190, 100] and m.torso[199, 10]


def test_semantic_map_classes():
    lm, person = synthetic_face(), person_mask()
    m = frame_masks(lm, person, skin_image())
    sem = semantic_map(lm, m)
    assert sem.shape == (H, W) and sem.dtype == np.uint8
    assert len(SEMANTIC_CLASSES) == 12
    assert sem[5, 5] == CLASS_ID["background"]
    assert sem[120, 100] == CLASS_ID["inner_mouth"]
    assert sem[115, 100] == CLASS_ID["lips"]
    assert sem[78, 83] == CLASS_ID["eyes"]
    assert sem[66, 117] == CLASS_ID["eyebrows"]
    assert sem[98, 100] == CLASS_ID["nose"]
    assert sem[100, 75] == CLASS_ID["skin"]
    assert sem[25, 100] == CLASS_ID["hair"]  # head above the face outline
    assert sem[160, 100] == CLASS_ID["neck"]
    assert sem[190, 100] == CLASS_ID["torso"]
    assert sem[80, 143] == CLASS_ID["ears"]  # just outside the cheek, at eye height
    assert not (sem == CLASS_ID["glasses"]).any()


def test_headless_image_keeps_torso_only():
    lm, person = synthetic_face(), person_mask()
    image = skin_image()
    m = frame_masks(lm, person, image)
    bg = np.full_like(image, 7)
    out = headless_image(image, bg, m)
    np.testing.assert_array_equal(out[m.torso], image[m.torso])
    assert (out[m.head | m.neck] == 7).all()
    assert (out[~person] == 7).all()


def test_background_from_uncovered_pixels():
    acc = BackgroundAccumulator(20, 20, margin=0)
    frame_a = np.full((20, 20, 3), 100, np.uint8)
    frame_b = np.full((20, 20, 3), 200, np.uint8)
    left = np.zeros((20, 20), bool)
    left[:, :10] = True
    acc.add(frame_a, left)  # person on the left
    acc.add(frame_b, ~left)  # person on the right
    always = np.zeros((20, 20), bool)
    always[8:12, 8:12] = True
    bg, filled = acc.result()
    assert filled == 0.0
    assert (bg[:, :10] == 200).all() and (bg[:, 10:] == 100).all()
    acc2 = BackgroundAccumulator(20, 20, margin=0)
    acc2.add(frame_a, always)
    bg2, filled2 = acc2.result()
    assert filled2 == 16 / 400
    assert np.abs(bg2.astype(int) - 100).max() <= 2  # filled from the surroundings


def test_box_dilation_and_histogram_median_give_the_whole_frame_results():
    import cv2

    from data_processing.masks import _dilate, _masked_median

    rng = np.random.default_rng(0)
    for radius in (1, 3, 8):
        mask = np.zeros((120, 90), bool)
        mask[rng.integers(0, 120, 12), rng.integers(0, 90, 12)] = True
        mask[0, 5] = mask[119, 89] = True  # at the image's edges
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        np.testing.assert_array_equal(_dilate(mask, radius), cv2.dilate(mask.astype(np.uint8), disk) > 0)
    assert not _dilate(np.zeros((10, 10), bool), 2).any()
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    for count in (1, 2, 7, 500):
        mask = np.zeros((64, 48), bool)
        mask.flat[rng.choice(64 * 48, count, replace=False)] = True
        np.testing.assert_array_equal(_masked_median(image, mask, (1, 2)), np.median(image[mask][:, 1:], axis=0))


def test_masks_and_label_maps_are_pngs_any_reader_reads(tmp_path):
    from PIL import Image

    from data_processing.io_utils import read_image, read_mask, write_label_map, write_mask

    rng = np.random.default_rng(1)
    for shape in ((37, 53), (1, 9), (9, 1), (64, 64)):
        mask, labels = rng.random(shape) > 0.5, rng.integers(0, 12, shape, dtype=np.uint8)
        write_mask(tmp_path / "m.png", mask)
        write_label_map(tmp_path / "s.png", labels)
        np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png")), mask)
        np.testing.assert_array_equal(read_image(tmp_path / "s.png", grayscale=True), labels)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s.png")), labels)
