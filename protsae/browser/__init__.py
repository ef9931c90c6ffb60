"""The latent browser (METHODS.md section 13): a static site of every SAE's latents.

`examples` draws what a latent page shows from the codes, `structures` reads backbones, `pack`
holds the compact encodings and the colour scale the pages share, `site` writes the pages.
"""
