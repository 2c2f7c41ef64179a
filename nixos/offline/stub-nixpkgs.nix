# The flake that stands in for nixpkgs in `nix flake check` offline: nixos/offline/check.sh
# copies it, the other nixos/offline/*.nix files and nixpkgs' lib/ into a directory and passes
# that as the nixpkgs input. See stand-in.nix.
{
  outputs = _: import ./stand-in.nix { lib = import ./lib; };
}
