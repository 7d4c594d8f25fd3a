"AnalysisOptions is the one place where analysis defaults live: the CLI, analyze, the particle functions and the review state agree with it (issue 26)."
import inspect
from dataclasses import fields, replace

import numpy as np
import pytest
from skimage.draw import disk

from hrtem_np.options import AnalysisOptions
from hrtem_np.io import Micrograph


def _image():
    img = 1.0 + 0.05*np.random.default_rng(0).standard_normal((128, 128))
    for c in [(40, 40), (90, 80), (64, 2)]: img[disk(c, 10, shape=img.shape)] -= 0.6
    return Micrograph(img.astype(np.float32), 0.1)


def test_cli_defaults_are_the_options_defaults():
    from hrtem_np.cli import _parser
    d, a = AnalysisOptions(), _parser().parse_args(['analyze', 'x.tif', '--out', 'o'])
    assert (a.min_diameter_nm, a.edge, a.annotations, a.element, a.frame, a.signal, a.scale_bar_nm) == \
           (d.min_diameter_nm, d.edge, d.annotations, None, d.frame, d.signal, d.scale_bar_nm)   # element None → d.element
    assert (a.crystal, a.tta, a.calibration_overrides) == (d.crystal, d.tta, d.calibration_overrides)


def test_particle_functions_use_the_options_defaults():
    from hrtem_np import particles, segment
    d = AnalysisOptions()
    for fn in (particles.select_particles, particles.particles_from_mask, particles.dropped_particles,
               particles.split_particles, segment.segment_classical):
        ps = inspect.signature(fn).parameters
        for k in ('min_diameter_nm', 'edge', 'method'):
            if k in ps: assert ps[k].default == getattr(d, k), (fn.__name__, k)


def test_analyze_records_the_options_and_the_review_state_reads_them():
    from hrtem_np.batch import analyze
    from hrtem_np.widgets import Reviewer
    d = AnalysisOptions()
    a = analyze(_image(), model='classical', progress=False)
    for f in fields(d):
        if f.name not in ('nm_per_px', 'threshold'): assert a.options[f.name] == getattr(d, f.name), f.name
    assert a.options['threshold'] is None and a.options['model'] == 'classical'   # the classical model has no cut
    rv = Reviewer(a)
    assert rv.state.run == dict(min_diameter_nm=d.min_diameter_nm, edge=d.edge, method=d.method, element=d.element)
    assert list(a.dropped['drop_rule']) == ['edge']                               # the default edge rule applied


def test_an_options_object_and_keywords_combine():
    from hrtem_np.batch import analyze
    keep = AnalysisOptions(edge='keep', min_diameter_nm=1.0)
    a = analyze(_image(), model='classical', progress=False, options=keep)
    assert (a.options['edge'], a.options['min_diameter_nm'], a.n_particles) == ('keep', 1.0, 3)
    b = analyze(_image(), model='classical', progress=False, options=keep, edge='exclude')   # a keyword wins over the object
    assert (b.options['edge'], b.options['min_diameter_nm'], b.n_particles) == ('exclude', 1.0, 2)
    with pytest.raises(TypeError, match='unknown analysis option'): analyze(_image(), model='classical', min_diam=1)
    assert 'min_confidence' in inspect.signature(analyze).parameters   # help(analyze) lists every option
    assert replace(keep, edge='flag').edge == 'flag'
