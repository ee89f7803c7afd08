"""Models, one module per chapter: mnist, flows, latent_ode."""
