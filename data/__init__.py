"""The data the method reads: the releases' folders and annotation sheets (MEGC2019's composite, CK+, a user's own
index; CAS(ME)^2 and SAMM Long Videos), frame files checked before they are decoded, and the synthetic demo sets
written in the releases' layouts."""
