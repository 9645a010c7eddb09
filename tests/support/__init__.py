"""Helpers the tests share: servers, boot images, the reference PC, expectations. Test modules import only these."""
