# Debian packages with CPack's DEB generator, one package per install component
# (scripts/package.sh builds them, runs lintian and a consumer against them):
#
#   libclbn0         component lib     the shared library (SONAME libclbn.so.0)
#   libclbn-dev      component dev     headers, libclbn.so, CMake package, clbn.pc
#   libclbn-mpi0     component mpi     libclbn_mpi.so.0 (when clbn_mpi is built)
#   libclbn-mpi-dev  component mpidev  clbn_mpi.h, libclbn_mpi.so, its CMake targets
#   clbn-tools       component tools   clbn_bench and clbn-tune (when built)
#
# Configure with -DCMAKE_INSTALL_PREFIX=/usr so that GNUInstallDirs picks the
# multiarch libdir (lib/<triplet>); the package version is PROJECT_VERSION plus
# the Debian revision CLBN_DEB_RELEASE.
#
# Files only the packages carry (copyright, changelog.Debian.gz, lintian
# overrides) are EXCLUDE_FROM_ALL: CPack installs component by component and
# gets them, a plain `cmake --install` does not.

if(NOT PROJECT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  return() # a subproject of someone else's build: no packages
endif()

set(CLBN_DEB_RELEASE "1" CACHE STRING "Debian revision of the clbn packages (version PROJECT_VERSION-CLBN_DEB_RELEASE)")
set(CLBN_DEB_MAINTAINER "clbn authors <clbn@example.org>" CACHE STRING
    "Maintainer field of the clbn Debian packages (\"Name <address>\")")
set(CLBN_DEB_VERSION "${PROJECT_VERSION}-${CLBN_DEB_RELEASE}")
set(CLBN_DEB_DIR "${PROJECT_SOURCE_DIR}/packaging/debian")
set(CLBN_DEB_GEN "${PROJECT_BINARY_DIR}/packaging")

# --- the tools: clbn_bench (bench/) and clbn-tune, when those targets exist ---
if(TARGET clbn_bench)
  install(TARGETS clbn_bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
endif()
if(TARGET clbn-tune)
  install(TARGETS clbn-tune RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
endif()

if(NOT BUILD_SHARED_LIBS)
  message(STATUS "clbn: no Debian packages (cpack) in a static build (BUILD_SHARED_LIBS=OFF)")
  return()
endif()

# --- per-package documentation: copyright, changelog.Debian.gz, man pages ------
# changelog.Debian: its version is the package's; its date honours
# SOURCE_DATE_EPOCH (scripts/package.sh sets it to the last commit's time).
string(TIMESTAMP CLBN_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file("${CLBN_DEB_DIR}/changelog.in" "${CLBN_DEB_GEN}/changelog.Debian" @ONLY)
find_program(CLBN_GZIP gzip)
mark_as_advanced(CLBN_GZIP)
function(clbn_deb_gzip in out) # gzip -9n: no name or time stamp in the header
  if(CLBN_GZIP)
    execute_process(COMMAND "${CLBN_GZIP}" -9nc INPUT_FILE "${in}" OUTPUT_FILE "${out}"
                    RESULT_VARIABLE rc)
    if(rc EQUAL 0)
      return()
    endif()
  endif()
  message(WARNING "clbn: gzip failed, ${out} not made (the Debian packages need it)")
endfunction()
clbn_deb_gzip("${CLBN_DEB_GEN}/changelog.Debian" "${CLBN_DEB_GEN}/changelog.Debian.gz")
clbn_deb_gzip("${CLBN_DEB_DIR}/clbn_bench.1" "${CLBN_DEB_GEN}/clbn_bench.1.gz")
# made at configure time: configure again when a source of them changes
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  "${CLBN_DEB_DIR}/clbn_bench.1" "${CLBN_DEB_DIR}/clbn-tune.1" "${CLBN_DEB_DIR}/copyright")

set(CLBN_DEB_COMPONENTS lib dev)
if(TARGET clbn_mpi)
  list(APPEND CLBN_DEB_COMPONENTS mpi mpidev)
endif()
if(TARGET clbn_bench OR TARGET clbn-tune)
  list(APPEND CLBN_DEB_COMPONENTS tools)
endif()
set(CLBN_DEB_NAME_lib libclbn${PROJECT_VERSION_MAJOR})
set(CLBN_DEB_NAME_dev libclbn-dev)
set(CLBN_DEB_NAME_mpi libclbn-mpi${PROJECT_VERSION_MAJOR})
set(CLBN_DEB_NAME_mpidev libclbn-mpi-dev)
set(CLBN_DEB_NAME_tools clbn-tools)

foreach(c IN LISTS CLBN_DEB_COMPONENTS)
  set(docdir "${CMAKE_INSTALL_DATAROOTDIR}/doc/${CLBN_DEB_NAME_${c}}")
  install(FILES "${CLBN_DEB_DIR}/copyright" "${CLBN_DEB_GEN}/changelog.Debian.gz"
          DESTINATION "${docdir}" COMPONENT ${c} EXCLUDE_FROM_ALL)
endforeach()
foreach(c IN ITEMS lib mpi) # the shared-library packages
  if(c IN_LIST CLBN_DEB_COMPONENTS)
    set(CLBN_DEB_PKG ${CLBN_DEB_NAME_${c}})
    configure_file("${CLBN_DEB_DIR}/shlib.lintian-overrides.in" "${CLBN_DEB_GEN}/${CLBN_DEB_PKG}" @ONLY)
    install(FILES "${CLBN_DEB_GEN}/${CLBN_DEB_PKG}" DESTINATION "${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides"
            COMPONENT ${c} EXCLUDE_FROM_ALL)
  endif()
endforeach()
if(TARGET clbn_bench)
  install(FILES "${CLBN_DEB_GEN}/clbn_bench.1.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1" COMPONENT tools)
endif()
if(TARGET clbn-tune AND EXISTS "${CLBN_DEB_DIR}/clbn-tune.1")
  clbn_deb_gzip("${CLBN_DEB_DIR}/clbn-tune.1" "${CLBN_DEB_GEN}/clbn-tune.1.gz")
  install(FILES "${CLBN_DEB_GEN}/clbn-tune.1.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1" COMPONENT tools)
elseif(TARGET clbn-tune) # no man page yet: lintian's no-manual-page, overridden with a reason
  install(FILES "${CLBN_DEB_DIR}/clbn-tune.lintian-overrides" DESTINATION "${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides"
          RENAME ${CLBN_DEB_NAME_tools} COMPONENT tools EXCLUDE_FROM_ALL)
endif()

# --- CPack -------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME clbn)
set(CPACK_PACKAGE_VENDOR "clbn authors")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
# Empty on purpose: CPackDeb would put a non-default summary in front of each
# component's description, whose first line is already its own synopsis.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
set(CPACK_PACKAGE_CONTACT "${CLBN_DEB_MAINTAINER}")
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
set(CPACK_COMPONENTS_ALL ${CLBN_DEB_COMPONENTS})
set(CPACK_COMPONENTS_GROUPING IGNORE) # one package per component

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # name_version-release_arch.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE "${CLBN_DEB_RELEASE}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CLBN_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SOURCE clbn)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
# Inter-package dependencies are exact: libclbn-dev depends on libclbn0 (= version).
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
# dpkg-shlibdeps for the libraries' system dependencies (libc6, the OpenCL ICD
# loader with its "| libopencl1" alternatives, libcjson1, libopenmpi3); it finds
# libclbn.so.0 in the build tree, and the component dependencies name its package.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS "${PROJECT_BINARY_DIR}")
# DEBIAN/shlibs for the library packages ("libclbn 0 libclbn0 (>= version)"),
# so that packages built against them get their dependency from dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

set(blurb "clbn computes batch normalization (forward training with running
statistics, inference and backward, NCHW and NHWC, float32, float16, bfloat16
and float64) with OpenCL kernels, on any OpenCL 1.2 device through the ICD
loader.")

# libclbn0
set(CPACK_DEBIAN_LIB_PACKAGE_NAME ${CLBN_DEB_NAME_lib})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA "${CLBN_DEB_DIR}/triggers")
set(CPACK_COMPONENT_LIB_DESCRIPTION "batch normalization on any OpenCL device - shared library
${blurb}
.
This package contains the shared library.")

# libclbn-dev: the headers need CL/cl.h, CMake's FindOpenCL and pkg-config
# need the loader's libOpenCL.so / OpenCL.pc, and clbn.pc's Requires.private
# names libcjson (pkg-config fails without libcjson.pc).
set(CPACK_DEBIAN_DEV_PACKAGE_NAME ${CLBN_DEB_NAME_dev})
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "ocl-icd-opencl-dev | opencl-dev, opencl-c-headers | opencl-headers, libcjson-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION "batch normalization on any OpenCL device - development files
${blurb}
.
This package contains the headers (clbn.h, clbn/version.h), the libclbn.so
link, the CMake package (find_package(clbn), target clbn::clbn) and the
pkg-config file clbn.pc.")

# libclbn-mpi0 / libclbn-mpi-dev
set(CPACK_DEBIAN_MPI_PACKAGE_NAME ${CLBN_DEB_NAME_mpi})
set(CPACK_DEBIAN_MPI_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_MPI_PACKAGE_CONTROL_EXTRA "${CLBN_DEB_DIR}/triggers")
set(CPACK_COMPONENT_MPI_DEPENDS lib)
set(CPACK_COMPONENT_MPI_DESCRIPTION "synchronized batch normalization over MPI for clbn - shared library
${blurb}
.
clbn_mpi builds a clbn synchronization group on an MPI communicator, so that
batch statistics are reduced across ranks (synchronized batch norm). This
package contains the shared library.")

set(CPACK_DEBIAN_MPIDEV_PACKAGE_NAME ${CLBN_DEB_NAME_mpidev})
set(CPACK_DEBIAN_MPIDEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_MPIDEV_DEPENDS mpi dev)
set(CPACK_DEBIAN_MPIDEV_PACKAGE_DEPENDS "libopenmpi-dev")
set(CPACK_COMPONENT_MPIDEV_DESCRIPTION "synchronized batch normalization over MPI for clbn - development files
${blurb}
.
This package contains clbn_mpi.h, the libclbn_mpi.so link and the CMake
targets behind find_package(clbn COMPONENTS mpi) (target clbn::clbn_mpi).")

# clbn-tools
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME ${CLBN_DEB_NAME_tools})
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION science)
set(CPACK_COMPONENT_TOOLS_DEPENDS lib)
set(CPACK_COMPONENT_TOOLS_DESCRIPTION "batch normalization on any OpenCL device - tools
${blurb}
.
This package contains clbn_bench, which times and verifies one clbn call on
an OpenCL device, and clbn-tune when it is built.")

include(CPack)
