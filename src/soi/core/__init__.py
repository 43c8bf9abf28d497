"""The streaming protocol and what every streaming module is built from: states and the state
tree, the shift register, and the containers that compose modules."""
