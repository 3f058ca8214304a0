"""Training and evaluation on Landslide4Sense with the method's protocol."""
