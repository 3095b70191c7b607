"""Operations views of Offload. The async server never uses this package."""
