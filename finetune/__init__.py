"""Stage II of MPM: 2D-to-3D lifting on Human3.6M from the pretrained shared network, and the standard
evaluation protocols (Human3.6M Protocols #1/#2, N-MPJPE, MPJVE; MPI-INF-3DHP PCK/AUC; pose completion)."""
