/* A PoCL 3.1 defect, without clbn: build with
 *   gcc scripts/pocl_vload_half8.c -o /tmp/pocl_vload_half8 -lOpenCL
 * and run with an element offset: 0 and 8 (16-byte aligned) print 8, 1 and 3
 * end with SIGSEGV on PoCL 3.1 (an aligned vmovdqa on a 2-byte-aligned
 * address). Rusticl (OCL_ICD_VENDORS=/etc/OpenCL/vendors/rusticl.icd
 * RUSTICL_ENABLE=llvmpipe) and oclgrind print 8 for every offset. clbn avoids
 * vload_half8 (cl/common.cl, LOAD8 for float16). */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
/* PoCL 3.1: vload_half8 on a 2-byte-aligned (not 16-byte) address, inside a
 * branch on a pointer argument, compiles to an aligned vector load (vmovdqa)
 * and the process dies with SIGSEGV. No clbn involved. */
static const char *src =
"__kernel void k(__global const half *a, __global const half *m, __global float *out, ulong off)\n"
"{\n"
"    float8 v = vload_half8(0, a + off);\n"
"    if (m)\n"
"        v = select(v, (float8)(0.0f), islessequal(vload_half8(0, m + off), (float8)(0.0f)));\n"
"    out[0] = v.s0 + v.s1 + v.s2 + v.s3 + v.s4 + v.s5 + v.s6 + v.s7;\n"
"}\n";
int main(int argc, char **argv){
  cl_ulong off = argc > 1 ? strtoul(argv[1],0,10) : 1;
  cl_platform_id p; cl_device_id d; cl_int e;
  clGetPlatformIDs(1,&p,NULL); clGetDeviceIDs(p,CL_DEVICE_TYPE_ALL,1,&d,NULL);
  cl_context c=clCreateContext(NULL,1,&d,NULL,NULL,&e);
  cl_command_queue q=clCreateCommandQueue(c,d,0,&e);
  cl_program pr=clCreateProgramWithSource(c,1,&src,NULL,&e);
  if(clBuildProgram(pr,1,&d,"-cl-std=CL1.2",NULL,NULL)) return 2;
  cl_kernel k=clCreateKernel(pr,"k",&e);
  unsigned short h[64]; for(int i=0;i<64;i++) h[i]=0x3c00;
  cl_mem a=clCreateBuffer(c,CL_MEM_READ_ONLY|CL_MEM_COPY_HOST_PTR,sizeof h,h,&e);
  cl_mem m=clCreateBuffer(c,CL_MEM_READ_ONLY|CL_MEM_COPY_HOST_PTR,sizeof h,h,&e);
  cl_mem o=clCreateBuffer(c,CL_MEM_READ_WRITE,4,NULL,&e);
  clSetKernelArg(k,0,sizeof a,&a); clSetKernelArg(k,1,sizeof m,&m); clSetKernelArg(k,2,sizeof o,&o); clSetKernelArg(k,3,sizeof off,&off);
  size_t g=1; e=clEnqueueNDRangeKernel(q,k,1,NULL,&g,&g,0,NULL,NULL);
  float r=0; clEnqueueReadBuffer(q,o,CL_TRUE,0,4,&r,0,NULL,NULL);
  printf("offset %lu: sum %g (expect 8)\n",(unsigned long)off,r); return 0;}
