"""Steering one latent (METHODS.md section 8): exact identity, the delta form, no clamping in
place, the SAE's own layer, and a planted latent that turns residues into the one its decoder
direction stands for, in a masked and in a next-residue LM."""

import itertools

import numpy as np
import pytest
import torch

from protsae.models import STANDARD_RESIDUES
from protsae.sae.config import SAEConfig
from protsae.sae.variants import BatchTopKSAE, TopKSAE
from protsae.steering.edit import Clamp, read_out, read_out_clamped, steer_rows, steering_edit


def random_sequences(n, seed=0, low=20, high=50):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(STANDARD_RESIDUES), rng.integers(low, high))) for _ in range(n)]


def random_sae(d_model, n_latents=64, k=4, seed=0, cls=TopKSAE):
    sae = cls(SAEConfig(d_model=d_model, n_latents=n_latents, k=k, seed=seed))
    with torch.no_grad():
        sae.b_pre.normal_(0, 0.1)
        sae.b_enc.normal_(0, 0.1)
    return sae.eval()


@pytest.fixture(scope="module")
def unirep():
    from protsae.models.unirep import UniRep

    return UniRep.from_weights(64)


def test_a_clamp_that_keeps_the_codes_keeps_the_activations_exactly():
    sae = random_sae(16)
    x = torch.randn(10, 16, generator=torch.Generator().manual_seed(0))
    _, idx = sae.select(sae.pre_acts(x))
    never_kept = next(j for j in range(64) if not (idx == j).any())
    # Clamped far below every kept value, the latent stays out: the same kept latents, so h' == h.
    assert torch.equal(steer_rows(sae, x, Clamp(never_kept, -1e6)), x)
    # "part" mode on a latent that never fires clamps nothing, whatever the value.
    assert torch.equal(steer_rows(sae, x, Clamp(never_kept, 1e6, only_where_active=True)), x)
    assert torch.equal(steer_rows(sae, x, None), x)


@pytest.mark.parametrize("cls", [TopKSAE, BatchTopKSAE])
def test_the_delta_form_is_the_clamped_reconstruction_plus_the_error(cls):
    sae = random_sae(16, cls=cls)
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    steered = steer_rows(sae, x, Clamp(3, 25.0))
    pre = sae.pre_acts(x)
    vals, idx = sae.select(pre)
    error = x - sae.decode(vals, idx)
    clamped = pre.clone()
    clamped[:, 3] = 25.0
    assert torch.allclose(steered, sae.decode(*sae.select(clamped)) + error, atol=1e-5)
    # Latent 3 is now kept at 25 at every residue.
    new_vals, new_idx = sae.select(clamped)
    assert ((new_idx == 3) & (new_vals == 25.0)).any(-1).all()
    # Nothing was clamped in place: the input is untouched and a second clamp gives the same.
    assert torch.equal(x, before)
    assert torch.equal(steer_rows(sae, x, Clamp(3, 25.0)), steered)


def test_part_mode_clamps_only_where_the_latent_fires():
    sae = random_sae(16, k=8)
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(2))
    vals, idx = sae.select(sae.pre_acts(x))
    fires = ((idx == 5) & (vals > 0)).any(-1)
    assert 0 < fires.sum() < len(x)
    steered = steer_rows(sae, x, Clamp(5, 9.0, only_where_active=True))
    assert torch.equal(steered[~fires], x[~fires])
    assert not torch.allclose(steered[fires], x[fires])


def test_steering_resumes_at_the_saes_own_layer(tiny_model):
    """protsae's read-out equals a hand-written forward (a hook on that one HF block) for two layers."""
    sequences = random_sequences(3)
    batch = tiny_model.tokenize(sequences)
    hf = tiny_model._model
    outputs = {}
    for layer in (1, 2):
        sae = random_sae(tiny_model.d_model, seed=layer)
        clamp = Clamp(7, 4.0)

        def hook(module, args, output, sae=sae, clamp=clamp):
            hidden = output[0] if isinstance(output, tuple) else output
            edited = hidden.clone()
            edited[batch.residue_mask] = steer_rows(sae, hidden[batch.residue_mask], clamp)
            return (edited, *output[1:]) if isinstance(output, tuple) else edited

        handle = hf.base_model.encoder.layer[layer - 1].register_forward_hook(hook)
        try:
            with torch.no_grad():
                expected = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        finally:
            handle.remove()
        with tiny_model.replace_layer_output(layer, steering_edit(sae, batch.residue_mask, clamp)):
            got = tiny_model.logits(batch)
        assert torch.allclose(got, expected, atol=1e-5)
        outputs[layer] = got
    assert not torch.allclose(outputs[1], outputs[2])
    assert not torch.allclose(outputs[1], tiny_model.logits(batch))


def planted_direction(model, sequences, scale):
    """A unit direction that, added at the top layer with ``scale``, makes the LM predict one
    residue almost everywhere: the best of 64 random directions, and that residue."""
    generator = torch.Generator().manual_seed(0)
    batch = model.tokenize(sequences)
    best = (0.0, None, None)
    for _ in range(64):
        direction = torch.randn(model.d_model, generator=generator)
        direction /= direction.norm()

        def add(output, direction=direction):
            edited = output.clone()
            edited[batch.residue_mask] += scale * direction
            return edited

        with model.replace_layer_output(model.n_layers, add):
            readouts = read_out(model, sequences)
        letters = "".join(r.sequence[1:] for r in readouts)
        residue, count = max(((c, letters.count(c)) for c in set(letters)), key=lambda item: item[1])
        if count / len(letters) > best[0]:
            best = (count / len(letters), direction, residue)
    return best


@pytest.mark.parametrize("lm", ["tiny_esm2", "unirep"])
def test_a_planted_latent_turns_residues_into_its_residue(lm, tiny_model, request):
    model = tiny_model if lm == "tiny_esm2" else request.getfixturevalue("unirep")
    sequences = random_sequences(4, seed=1)
    share, direction, residue = planted_direction(model, sequences, scale=60.0)
    assert share > 0.9, "no random direction maps onto one residue"
    sae = random_sae(model.d_model, n_latents=32, k=2, seed=3)
    with torch.no_grad():
        sae.W_dec[0] = direction
    layer = model.n_layers
    baseline = read_out(model, sequences)
    shares = []
    for multiplier in (0.0, 0.5, 1.0, 2.0, 4.0):
        readouts = read_out(model, sequences, sae, layer, Clamp(0, multiplier * 15.0))
        # Residue 0 of a next-residue LM has nothing before it to be steered by.
        letters = "".join(r.sequence[1:] for r in readouts)
        shares.append(letters.count(residue) / len(letters))
    assert shares[-1] > 0.9 and shares[0] < 0.5, shares
    assert all(b >= a - 0.05 for a, b in itertools.pairwise(shares)), shares
    if model.lm_objective != "masked":
        assert all(r.sequence[0] == s[0] for r, s in zip(readouts, sequences))
    # The read-out's log-probabilities are normalised over the 20 residues.
    assert torch.allclose(baseline[0].log_probs.exp().sum(-1), torch.ones(len(sequences[0])), atol=1e-5)
    consensus = baseline[0].log_prob_of(sequences[0])
    assert consensus.shape == (len(sequences[0]),) and torch.isfinite(consensus).all()


@pytest.mark.parametrize("lm", ["tiny_esm2", "unirep"])
def test_resuming_above_a_layer_gives_the_full_forward(lm, tiny_model, request):
    """logits_from (UniRep runs only the layers above) equals the whole model with that layer's
    output replaced, and the layers above still apply their own edits."""
    model = tiny_model if lm == "tiny_esm2" else request.getfixturevalue("unirep")
    batch = model.tokenize(random_sequences(3, seed=4))
    for layer in range(model.n_layers):
        output = model.hidden_states(batch, [layer])[layer] + 0.3 * torch.randn(1)
        with model.replace_layer_output(layer, lambda _: output):
            expected = model.logits(batch)
        assert torch.allclose(model.logits_from(layer, output, batch), expected, atol=1e-5)
        with model.replace_layer_output(model.n_layers, lambda x: 2 * x):
            doubled = model.logits_from(layer, output, batch)
        assert not torch.allclose(doubled, expected, atol=1e-3)
        above = list(range(layer + 1, model.n_layers + 1))
        with model.replace_layer_output(layer, lambda _: output):
            expected_hidden = model.hidden_states(batch, above)
        got_hidden = model.hidden_states_from(layer, output, batch, above)
        assert all(torch.allclose(got_hidden[i], expected_hidden[i], atol=1e-5) for i in above)
    with pytest.raises(ValueError, match="must all come after layer 1"):
        model.hidden_states_from(1, output, batch, [1, 2])
    if lm == "unirep":  # the layers at and below the resumed one do not run
        calls = []
        handles = [mlstm.register_forward_hook(lambda *_, i=i: calls.append(i)) for i, mlstm in
                   enumerate(model._net.layers, start=1)]
        try:
            model.logits_from(2, model.hidden_states(batch, [2])[2], batch)
        finally:
            for handle in handles:
                handle.remove()
        assert calls == [1, 2, 3, 4]  # two for hidden_states, then only the two above layer 2


@pytest.mark.parametrize("lm", ["tiny_esm2", "unirep"])
def test_clamps_read_out_together_equal_each_read_out_alone(lm, tiny_model, request):
    """read_out_clamped (the layers below once, the SAE once per sequence, the pairs in small
    batches) gives every (sequence, clamp) pair the read-out of read_out on its own."""
    model = tiny_model if lm == "tiny_esm2" else request.getfixturevalue("unirep")
    sequences = random_sequences(3, seed=5)
    sae = random_sae(model.d_model, n_latents=32, k=2, seed=6)
    layer = 1
    clamps = [[None, Clamp(3, 0.0), Clamp(3, 8.0)], [Clamp(5, 4.0, only_where_active=True)], []]
    # A budget of two rows per batch: the pairs run in several batches.
    together = read_out_clamped(model, sequences, sae, layer, clamps, max_tokens=2 * (max(map(len, sequences)) + 2))
    assert [len(own) for own in together] == [3, 1, 0]
    for sequence, own, readouts in zip(sequences, clamps, together):
        for clamp, readout in zip(own, readouts):
            alone = read_out(model, [sequence], sae, layer, clamp)[0]
            assert readout.sequence == alone.sequence
            assert torch.allclose(readout.log_probs, alone.log_probs, atol=1e-5)
    assert together[0][2].sequence != together[0][0].sequence or not torch.allclose(
        together[0][2].log_probs, together[0][0].log_probs)
    with pytest.raises(ValueError, match="2 lists of clamps for 3 sequences"):
        read_out_clamped(model, sequences, sae, layer, clamps[:2])


def test_bad_steering_inputs_say_what_is_wrong(tiny_model):
    sae = random_sae(tiny_model.d_model)
    with pytest.raises(ValueError, match="latent 64 is out of range: the SAE has 64 latents"):
        steer_rows(sae, torch.randn(3, tiny_model.d_model), Clamp(64, 1.0))
    with pytest.raises(ValueError, match="a clamp needs the SAE and its layer"):
        read_out(tiny_model, ["ACDE"], clamp=Clamp(0, 1.0))


def test_the_one_sequence_command_prints_and_writes_the_readouts(tmp_path, capsys):
    from pathlib import Path

    import pandas as pd

    from protsae.steering.__main__ import main

    config = Path(__file__).resolve().parents[2] / "config/tiny.yaml"
    sae = random_sae(32, n_latents=16, k=2)
    sae.save(tmp_path / "sae")
    sequence = random_sequences(1, seed=4)[0]
    args = [str(tmp_path / "sae"), "--latent", "3", "--sequence", sequence, "--multipliers", "1", "4",
            "--layer", "2", "--config", str(config), "--out", str(tmp_path / "out.tsv")]
    assert main(args) == 0
    table = pd.read_csv(tmp_path / "out.tsv", sep="\t")
    assert table["multiplier"].astype(str).tolist() == ["none", "1.0", "4.0"]
    assert (table["readout"].str.len() == len(sequence)).all()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["input", sequence] and printed[1].split()[0] == "unsteered"
    # Lower case marks exactly the residues that differ from the input.
    for line, row in zip(printed[1:], table.itertuples()):
        shown = line.split()[1]
        assert shown.upper() == row.readout and sum(c.islower() for c in shown) == row.n_changed
    with pytest.raises(SystemExit):
        main([*args[:2], "16", *args[3:]])
    assert "--latent 16 is out of range" in capsys.readouterr().err
    # An SAE of another layer than the one asked for.
    (tmp_path / "sae/splice.json").write_text('{"sae": {"layer": 1}}')
    with pytest.raises(SystemExit):
        main(args)
    assert "splice.json says the SAE was trained and evaluated at layer 1" in capsys.readouterr().err
