"""Official Account menus as data: the default and conditional menus, publishing them, and which version a click came from."""
