# Install rules and the Debian package (CPack). Included by the top-level
# CMakeLists.txt after the targets, with GNUInstallDirs already included.
#
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-deb --target vozagent-sync && (cd build-deb && cpack -G DEB)
#
# (scripts/package does exactly that.) With a /usr prefix, GNUInstallDirs puts the
# configuration in /etc (CMAKE_INSTALL_FULL_SYSCONFDIR), as Debian wants; the
# unit directory comes from systemd's own pkg-config file.

# The binary looks for /etc/vozagent-sync/vozagent-sync.conf whatever the
# prefix (CONFIG_DEFAULT_PATH): the example config goes where that is for /usr.
set(VOZAGENT_CONFDIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/vozagent-sync")

install(TARGETS vozagent-sync RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/config/vozagent-sync.conf DESTINATION ${VOZAGENT_CONFDIR})

set(VOZAGENT_MAINTAINER
    "vozagent-sync maintainers <maintainers@users.noreply.r-seed-ab5dc926.example>"
    CACHE STRING "Maintainer: of the .deb and its changelog (name <address>)")
configure_file(${CMAKE_SOURCE_DIR}/packaging/changelog.in
               ${CMAKE_BINARY_DIR}/packaging/changelog @ONLY)

# Debian wants manual pages compressed, and gzip -n keeps the bytes reproducible.
find_program(GZIP_EXECUTABLE gzip REQUIRED)
add_custom_command(
  OUTPUT ${CMAKE_BINARY_DIR}/vozagent-sync.8.gz
  COMMAND ${GZIP_EXECUTABLE} -9n -c ${CMAKE_SOURCE_DIR}/docs/vozagent-sync.8
          > ${CMAKE_BINARY_DIR}/vozagent-sync.8.gz
  DEPENDS ${CMAKE_SOURCE_DIR}/docs/vozagent-sync.8
  COMMENT "Compressing the manual page"
  VERBATIM)
add_custom_command(
  OUTPUT ${CMAKE_BINARY_DIR}/changelog.gz
  COMMAND ${GZIP_EXECUTABLE} -9n -c ${CMAKE_BINARY_DIR}/packaging/changelog
          > ${CMAKE_BINARY_DIR}/changelog.gz
  DEPENDS ${CMAKE_BINARY_DIR}/packaging/changelog
  COMMENT "Compressing the package changelog"
  VERBATIM)
add_custom_target(vozagent_docs ALL
  DEPENDS ${CMAKE_BINARY_DIR}/vozagent-sync.8.gz ${CMAKE_BINARY_DIR}/changelog.gz)
install(FILES ${CMAKE_BINARY_DIR}/vozagent-sync.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
# writer-role.sql is what `check` and the README send the operator to for the grants.
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/docs/writer-role.sql
              ${CMAKE_SOURCE_DIR}/packaging/copyright ${CMAKE_BINARY_DIR}/changelog.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# CPack: one .deb, vozagent-sync_<version>_<arch>.deb.
set(CPACK_PACKAGE_NAME vozagent-sync)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "vozagent-sync")
set(CPACK_PACKAGE_CONTACT "${VOZAGENT_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "mirror the VozAgent call log into PostgreSQL")
# CPack writes the summary as the synopsis, then these lines indented by one
# space, an empty line as " ."
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
"vozagent-sync polls the VozAgent call-listing API and keeps an exact copy of
every call in a PostgreSQL table, each page and its cursor written in one
transaction, every record also kept as received in a jsonb column.

It runs as a systemd service (Type=notify, sandboxed, the API key passed as
a credential); a template unit mirrors several accounts, and a timer runs a
weekly full reconciliation. The units are installed but not enabled.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://vozagent.ai")
# dpkg-shlibdeps names the libraries the binary links: libc6, libcurl4,
# libpq5, libuv1, libyajl2, with the versions this build needs.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# a service that talks to PostgreSQL; the database may well be on another host
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql")
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
# dpkg must not overwrite an edited config on upgrade; the file lists the
# absolute paths, so it is written for the configured sysconfdir.
file(WRITE ${CMAKE_BINARY_DIR}/packaging/conffiles "${VOZAGENT_CONFDIR}/vozagent-sync.conf\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_BINARY_DIR}/packaging/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Units installed, not enabled: no maintainer scripts at all. systemctl finds
# a new unit on `enable` and `start` without a daemon-reload.
set(CPACK_GENERATOR DEB)
include(CPack)
