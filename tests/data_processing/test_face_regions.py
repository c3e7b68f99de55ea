from mediapipe.python.solutions import face_mesh_connections as conn

from data_processing import face_regions as fr


def _edges(connections):
    return {frozenset(e) for e in connections}


def _missing(outline, connections, closed=True):
    pairs = list(zip(outline, outline[1:] + ([outline[0]] if closed else [])))
    return [p for p in pairs if frozenset(p) not in _edges(connections)]


def test_outlines_follow_mediapipe_edges():
    assert _missing(fr.FACE_OVAL, conn.FACEMESH_FACE_OVAL) == []
    assert _missing(fr.LIPS_OUTER, conn.FACEMESH_LIPS) == []
    assert _missing(fr.LIPS_INNER, conn.FACEMESH_LIPS) == []
    assert _missing(fr.RIGHT_EYE, conn.FACEMESH_RIGHT_EYE) == []
    assert _missing(fr.LEFT_EYE, conn.FACEMESH_LEFT_EYE) == []
    # Eyebrows: two edge chains joined once (the closing pair is not an edge either).
    assert _missing(fr.RIGHT_EYEBROW, conn.FACEMESH_RIGHT_EYEBROW, closed=False) == [(55, 107)]
    assert _missing(fr.LEFT_EYEBROW, conn.FACEMESH_LEFT_EYEBROW, closed=False) == [(285, 336)]


def test_named_points_lie_on_the_outline():
    for i in (fr.CHIN, fr.FOREHEAD, fr.LEFT_CHEEK, fr.RIGHT_CHEEK, fr.LEFT_JAW_ANGLE, fr.RIGHT_JAW_ANGLE):
        assert i in fr.FACE_OVAL
    assert len(fr.nose_points()) > 10
