import math

import numpy as np
import torch

from ex4d_engine.mesh import MeshOptions, build_dwmesh, grid_faces, min_face_angle_deg, pad_border, unproject


def test_face_list_matches_the_seed_layout():
    h, w = 3, 4
    faces = grid_faces(h, w).numpy()
    assert faces.shape == (2 * (h - 1) * (w - 1) + 2, 3)
    # first quad (TL=0, TR=1, BL=4, BR=5): A = (BL, TL, TR), B = (BL, TR, BR)
    assert faces[0].tolist() == [4, 0, 1]
    assert faces[(h - 1) * (w - 1)].tolist() == [4, 1, 5]
    # back caps: (TR, TL, BR) and (BR, TL, BL) corners
    assert faces[-2].tolist() == [w - 1, 0, h * w - 1]
    assert faces[-1].tolist() == [h * w - 1, 0, (h - 1) * w]
    # every interior quad's two triangles cover its four corners
    quads = faces[:-2].reshape(2, -1, 3)
    for a, b in zip(quads[0], quads[1]):
        assert len(set(a) | set(b)) == 4


def test_face_count_for_512_square():
    assert grid_faces(512, 512).shape[0] == 522_244


def test_unproject_is_planar_depth_through_pixel_centres():
    K = torch.tensor([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]], dtype=torch.float64)
    depth = torch.full((1, 48, 64), 2.0)
    pts = unproject(depth, K, pixel_offset=0.5).reshape(48, 64, 3)
    assert torch.allclose(pts[..., 2], torch.tensor(2.0))
    # pixel (col 10, row 5) centre (10.5, 5.5) back-projects through K
    assert math.isclose(pts[5, 10, 0].item(), (10.5 - 32) / 100 * 2, rel_tol=1e-6)
    assert math.isclose(pts[5, 10, 1].item(), (5.5 - 24) / 100 * 2, rel_tol=1e-6)
    seed = unproject(depth, K, pixel_offset=0.0).reshape(48, 64, 3)
    assert math.isclose(seed[5, 10, 0].item(), (10 - 32) / 100 * 2, rel_tol=1e-6)


def test_border_is_pushed_to_the_skirt_depth():
    padded = pad_border(torch.ones(2, 5, 6))
    assert padded[:, 0].eq(100).all() and padded[:, -1].eq(100).all()
    assert padded[:, :, 0].eq(100).all() and padded[:, :, -1].eq(100).all()
    assert padded[:, 1:-1, 1:-1].eq(1).all()


def test_min_angle_of_a_right_isosceles_triangle():
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])
    assert math.isclose(min_face_angle_deg(verts, torch.tensor([[0, 1, 2]])).item(), 45.0, rel_tol=1e-5)


def test_depth_step_hides_the_faces_between_the_levels(tiny_clip):
    frames, depth = tiny_clip
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    mesh = build_dwmesh(depth[:1], frames[:1], K)
    hidden = mesh.hidden_vertices[0].reshape(48, 64).numpy()
    # a flat wall far from the box and the border is visible ...
    assert not hidden[5:12, 5:15].any()
    # ... the box's outline (depth jump 3 -> 6) is hidden on both sides of the step ...
    assert hidden[24, 19] and hidden[24, 20] and hidden[24, 35] and hidden[24, 36]
    # ... and so is the skirt, except the TL and BR corners, which only touch valid faces (as in the seed)
    ring = np.ones_like(hidden)
    ring[1:-1, 1:-1] = False
    ring[0, 0] = ring[-1, -1] = False
    assert hidden[ring].all()
    assert not hidden[0, 0] and not hidden[-1, -1] and hidden[0, -1] and hidden[-1, 0]
    # hidden vertices carry colour and alpha 0, visible ones their pixel colour and 255
    rgba = mesh.rgba[0].reshape(48, 64, 4).numpy()
    assert (rgba[hidden] == 0).all()
    assert np.array_equal(rgba[10, 10], np.r_[frames[0, 10, 10].astype(np.float32), 255.0])
    # the caps close the back at the skirt depth and are not hidden (45/45/90 degrees)
    assert not mesh.hidden_faces[0, -2:].any()


def test_hidden_face_threshold_is_the_seed_min_angle():
    h, w = 4, 4
    K = np.array([[10.0, 0, 2], [0, 10.0, 2], [0, 0, 1]])
    colours = np.zeros((1, h, w, 3), np.uint8)
    strict = build_dwmesh(np.full((1, h, w), 5.0, np.float32), colours, K, MeshOptions(min_angle_deg=2.5))
    loose = build_dwmesh(np.full((1, h, w), 5.0, np.float32), colours, K, MeshOptions(min_angle_deg=0.0))
    assert strict.hidden_faces.sum() > 0  # the skirt faces are slivers
    assert loose.hidden_faces.sum() == 0
