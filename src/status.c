/* The status table: clbn_status_string and clbn_status_name come from the same
 * list as the enum (CLBN_STATUS_LIST in clbn.h), so they cannot drift. */
#include "internal.h"

const char *clbn_status_string(clbn_status status)
{
    switch (status) {
#define CLBN_STATUS_TEXT_(name, value, text) \
    case name:                                \
        return text;
        CLBN_STATUS_LIST(CLBN_STATUS_TEXT_)
#undef CLBN_STATUS_TEXT_
    }
    return "unknown clbn_status";
}

const char *clbn_status_name(clbn_status status)
{
    switch (status) {
#define CLBN_STATUS_NAME_(name, value, text) \
    case name:                                \
        return #name;
        CLBN_STATUS_LIST(CLBN_STATUS_NAME_)
#undef CLBN_STATUS_NAME_
    }
    return "CLBN_UNKNOWN_STATUS";
}

unsigned clbn_version_number(void)
{
    return CLBN_VERSION_NUMBER;
}

clbn_status clbn__from_cl(cl_int err)
{
    switch (err) {
    case CL_SUCCESS:
        return CLBN_SUCCESS;
    case CL_OUT_OF_HOST_MEMORY:
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    case CL_OUT_OF_RESOURCES:
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_INVALID_BUFFER_SIZE:
        return CLBN_ERROR_OUT_OF_DEVICE_MEMORY;
    case CL_INVALID_COMMAND_QUEUE:
        return CLBN_ERROR_INVALID_QUEUE;
    case CL_INVALID_MEM_OBJECT:
        return CLBN_ERROR_INVALID_BUFFER;
    case CL_INVALID_EVENT_WAIT_LIST:
    case CL_INVALID_EVENT:
        return CLBN_ERROR_INVALID_WAIT_LIST;
    case CL_BUILD_PROGRAM_FAILURE:
    case CL_COMPILER_NOT_AVAILABLE:
        return CLBN_ERROR_BUILD_PROGRAM_FAILURE;
    default:
        return CLBN_ERROR_OPENCL;
    }
}
