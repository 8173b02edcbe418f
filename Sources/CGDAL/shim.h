#ifndef DSMOPT_CGDAL_SHIM_H
#define DSMOPT_CGDAL_SHIM_H
#include <gdal.h>
#include <gdal_alg.h>
#include <gdal_utils.h>
#include <cpl_conv.h>
#include <cpl_string.h>
#include <cpl_error.h>
#include <cpl_vsi.h>
#include <ogr_srs_api.h>
#endif
