# myelin_set_warnings(target): the project's warning set; -Werror when MYELIN_WARNINGS_AS_ERRORS.
function(myelin_set_warnings target)
    target_compile_options(${target} PRIVATE
        -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
        -Wno-missing-field-initializers
        # g++ 12 reports false -Wrestrict positives on std::string concatenation (GCC bug 105329);
        # clang has no such warning (and rejects the option under -Werror).
        $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
    if(MYELIN_WARNINGS_AS_ERRORS)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
endfunction()
