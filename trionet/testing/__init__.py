"""Testing Trio applications over trionet: a simulated network of named
hosts (``Network``, ``Host``) in virtual time, and a pytest fixture
(``trionet_network``, from the plugin ``trionet.testing.plugin``)."""

from .network import Host, Network

__all__ = ["Host", "Network"]
