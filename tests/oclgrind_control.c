/* A kernel that writes past its buffer: .ci/run checks that
 * scripts/oclgrind_check.sh reports it (the Oclgrind checks can fail). */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
int main(void){ cl_platform_id p; cl_device_id d; cl_int e; clGetPlatformIDs(1,&p,NULL); clGetDeviceIDs(p,CL_DEVICE_TYPE_ALL,1,&d,NULL);
 cl_context c=clCreateContext(NULL,1,&d,NULL,NULL,&e); cl_command_queue q=clCreateCommandQueue(c,d,0,&e);
 const char*src="kernel void k(global float*a){ a[get_global_id(0)+4]=1.0f; }";
 cl_program pr=clCreateProgramWithSource(c,1,&src,NULL,&e); clBuildProgram(pr,1,&d,"",NULL,NULL); cl_kernel k=clCreateKernel(pr,"k",&e);
 cl_mem m=clCreateBuffer(c,CL_MEM_READ_WRITE,16,NULL,&e); clSetKernelArg(k,0,sizeof m,&m); size_t g=4; clEnqueueNDRangeKernel(q,k,1,NULL,&g,NULL,0,NULL,NULL); clFinish(q); printf("ran\n"); return 0;}
