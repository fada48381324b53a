// OpenBLAS's CBLAS interface; Debian ships it under /usr/include/<triplet>/openblas-pthread via pkg-config.
#include <cblas.h>
