#ifndef DSMOPT_CLINALG_SHIM_H
#define DSMOPT_CLINALG_SHIM_H
#include <cblas.h>
#include <lapacke.h>
#endif
